//! Integration tests against a real PostgreSQL (started by `make test`). One binary; each test
//! gets a fresh database named by a uuid, migrated as the owner, served as the app role.

mod auth;
mod authz;
mod budgets;
mod cluster;
mod credentials;
mod database_guard;
mod events;
mod fairness;
mod files;
mod helpers;
mod isolation;
mod listing;
mod openapi;
mod ops;
mod org;
mod partitioned;
mod pooler;
mod quota;
mod rls_audit;
mod rls_explain;
mod shard_audit;
mod shares;
mod shutdown;
mod storage;
mod stored;
mod tus;
mod tus_clients;
mod tus_integrity;
mod tus_slots;
mod upload_rules;
mod webhooks;
mod worker;
mod worker_process;
