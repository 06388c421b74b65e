//! The portal's static files, compiled in (`include_bytes!`), so the binary serves exactly the
//! page it was built with and no file system path is ever read at request time.

use axum::http::HeaderValue;

/// The policy every portal file is served under: scripts, styles, images and requests from this
/// origin only; no inline script or style, no plugins, no framing, no form posts elsewhere.
pub const CONTENT_SECURITY_POLICY: HeaderValue = HeaderValue::from_static(
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'",
);

/// One file: its name under `/portal/`, media type and content.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// The path below `/portal/` (`index.html` is also `/portal` itself).
    pub name: &'static str,
    /// The `Content-Type`.
    pub media_type: &'static str,
    /// The bytes.
    pub body: &'static [u8],
}

macro_rules! assets {
    ($( $name:literal => $media:literal ),+ $(,)?) => {
        /// Every file of `gateway/portal/`.
        pub const ASSETS: &[Asset] = &[
            $( Asset {
                name: $name,
                media_type: $media,
                body: include_bytes!(concat!("../../portal/", $name)),
            }, )+
        ];
    };
}

assets! {
    "index.html" => "text/html; charset=utf-8",
    "portal.css" => "text/css; charset=utf-8",
    "icon.svg" => "image/svg+xml",
    "js/main.js" => "text/javascript; charset=utf-8",
    "js/api.js" => "text/javascript; charset=utf-8",
    "js/wallet.js" => "text/javascript; charset=utf-8",
    "js/session.js" => "text/javascript; charset=utf-8",
    "js/ui.js" => "text/javascript; charset=utf-8",
    "js/fhir.js" => "text/javascript; charset=utf-8",
    "js/signing.js" => "text/javascript; charset=utf-8",
    "js/pages/signin.js" => "text/javascript; charset=utf-8",
    "js/pages/records.js" => "text/javascript; charset=utf-8",
    "js/pages/consents.js" => "text/javascript; charset=utf-8",
    "js/pages/grant.js" => "text/javascript; charset=utf-8",
    "js/pages/accesslog.js" => "text/javascript; charset=utf-8",
    "js/pages/delegates.js" => "text/javascript; charset=utf-8",
}

/// The file served at `/portal/<name>` (`/portal` and `/portal/` are `index.html`).
pub fn find(name: &str) -> Option<&'static Asset> {
    let name = if name.is_empty() { "index.html" } else { name };
    ASSETS.iter().find(|a| a.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn files(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("portal dir") {
            let path: PathBuf = entry.expect("entry").path();
            if path.is_dir() {
                files(&path, base, out);
            } else {
                let rel = path.strip_prefix(base).expect("below");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }

    #[test]
    fn every_file_of_the_portal_is_served_and_nothing_else() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("portal");
        let mut on_disk = Vec::new();
        files(&base, &base, &mut on_disk);
        on_disk.sort();
        let mut served: Vec<String> = ASSETS.iter().map(|a| a.name.to_owned()).collect();
        served.sort();
        assert_eq!(on_disk, served, "gateway/portal and ASSETS differ");
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let page = std::str::from_utf8(find("").expect("index").body).expect("utf-8");
        assert!(!page.contains("<script>"), "an inline script");
        assert!(!page.contains("style="), "an inline style");
        let handler = page.split(" on").skip(1).any(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!handler, "an inline event handler");
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).expect("utf-8");
            assert!(
                !text.contains("innerHTML"),
                "{} writes HTML from strings",
                asset.name
            );
            assert!(!text.contains("eval("), "{} evaluates strings", asset.name);
        }
    }
}
