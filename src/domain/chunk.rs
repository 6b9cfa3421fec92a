/// Bytes of a resumable (tus) upload in progress, stored as one object as they arrive, until the
/// upload completes and they are assembled into the file; its upload row records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Chunk {
    pub offset: u64,
    pub size: u64,
    /// One per write: a `PATCH` that lost a race for an offset never overwrites the winner's.
    pub nonce: uuid::Uuid,
}
