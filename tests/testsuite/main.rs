//! The integration suite: one test binary, one module per area (see tests/README.md).

mod support;

mod agent;
mod backups;
mod cli;
mod containers;
mod coverage;
mod delivery;
mod determinism;
mod dns;
mod docs_site;
mod edge;
mod edge_pair;
mod failover;
mod fingerprint;
mod golden;
mod invalid;
mod logship;
mod monitoring;
mod nftables;
mod pfsense;
mod pgbouncer;
mod postgres;
mod properties;
mod proxmox;
mod redis;
mod reference;
mod review;
mod schema;
mod secrets;
mod semantic;
