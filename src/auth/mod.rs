//! Authentication: password hashing off the async threads, and the PostgreSQL-backed session
//! store behind actix-session.

pub mod password;
pub mod session;
pub mod token;
