//! `carechain-indexer` binary (being built).

fn main() {}
