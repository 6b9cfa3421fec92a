//! Outbound webhooks (#27): secrets and signatures in the Standard Webhooks form
//! (https://www.standardwebhooks.com), and a sender that reaches only public addresses.
//! What is delivered when, and what an outcome changes, is the worker's (`worker::webhooks`).

mod sender;
mod signature;

pub use sender::{Attempt, Sender};
pub use signature::{new_secret, sign, Secret};
