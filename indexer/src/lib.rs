//! carechain indexer: mirrors the contracts' events into PostgreSQL (being built).
