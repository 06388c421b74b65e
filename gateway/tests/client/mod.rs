//! A signed-in HTTP client of a test gateway, shared by the record suites.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use crate::common::TestGateway;
use alloy::signers::local::PrivateKeySigner;
use serde_json::Value;

/// A signed-in client of a test gateway that counts the requests it sends (each is one audit
/// row).
pub struct Client<'a> {
    /// The gateway.
    pub gw: &'a TestGateway,
    /// The bearer token.
    pub token: String,
    requests: &'a std::cell::Cell<i64>,
}

impl<'a> Client<'a> {
    /// Signs `signer` in: two requests (nonce and login), counted.
    pub async fn sign_in(
        gw: &'a TestGateway,
        signer: &PrivateKeySigner,
        requests: &'a std::cell::Cell<i64>,
    ) -> Self {
        let token = gw.sign_in(signer).await;
        requests.set(requests.get() + 2);
        Self {
            gw,
            token,
            requests,
        }
    }

    /// One request; the answer's status, headers and JSON body (`Null` when not JSON).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .gw
            .http
            .request(method, self.gw.url(path))
            .bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/fhir+json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        self.requests.set(self.requests.get() + 1);
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }

    /// `GET`.
    pub async fn get(&self, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        self.send(reqwest::Method::GET, path, None, &[]).await
    }

    /// `POST [base]` with a Bundle.
    pub async fn post_bundle(&self, bundle: Value) -> (u16, reqwest::header::HeaderMap, Value) {
        self.post("/", bundle).await
    }

    /// `POST` a FHIR JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
        self.send(reqwest::Method::POST, path, Some(body), &[])
            .await
    }
}
