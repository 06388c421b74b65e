//! anvil's development keys, signing providers and random key material.

use alloy::{
    network::EthereumWallet,
    primitives::Address,
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};

/// anvil's well-known development keys (mnemonic "test test ... junk"): public knowledge,
/// worth nothing off a local chain. Each account starts with 10,000 ETH.
pub const DEV_KEYS: [&str; 10] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// The first development key: it deploys the contracts and is their governance.
pub const GOVERNANCE_KEY: &str = DEV_KEYS[0];

/// Development key `i` as a signer.
pub fn dev_signer(i: usize) -> PrivateKeySigner {
    DEV_KEYS[i].parse().expect("a development key parses")
}

/// The address of development key `i`.
pub fn dev_address(i: usize) -> Address {
    dev_signer(i).address()
}

/// A provider at `rpc_url` that signs with `signer`.
pub fn wallet_provider(rpc_url: &str, signer: PrivateKeySigner) -> DynProvider {
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(rpc_url.parse().expect("the RPC URL is a URL"))
        .erased()
}

/// A provider at `rpc_url` that signs with development key `i`.
pub fn signer_at(rpc_url: &str, i: usize) -> DynProvider {
    wallet_provider(rpc_url, dev_signer(i))
}

/// `N` random bytes (at most 32), from the same source as a new random key.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let key = PrivateKeySigner::random().to_bytes();
    let mut out = [0u8; N];
    out.copy_from_slice(&key[..N]);
    out
}

/// `N` random bytes as lower-case hex without `0x` (a key-encryption key, a name suffix).
pub fn random_hex<const N: usize>() -> String {
    alloy::hex::encode(random_bytes::<N>())
}
