//! Authentication: password hashing off the async threads, and the PostgreSQL-backed session
//! store behind actix-session, and the key that signs what the server hands out.

pub mod password;
pub mod session;
pub mod signing;
pub mod token;
