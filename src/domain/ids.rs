//! One newtype per id so an organization id can never be passed where a file id belongs.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random (v4) id: never sequential, never guessable.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// An organization (tenant).
    OrgId
);
id_type!(
    /// A user; belongs to exactly one organization.
    UserId
);
id_type!(
    /// A stored file.
    FileId
);
id_type!(
    /// A personal API token (its id, never its secret).
    TokenId
);
id_type!(
    /// An invitation to join an organization (its id, never its token).
    InvitationId
);
id_type!(
    /// A share link to a file (its id, never its secret).
    LinkId
);
id_type!(
    /// An entry of an organization's audit log.
    AuditEntryId
);
id_type!(
    /// A validation job: its outbox row and the message that carries it.
    JobId
);
id_type!(
    /// An organization's webhook endpoint (its id, never its secret).
    WebhookId
);
id_type!(
    /// One event's delivery to one webhook endpoint; its `webhook-id` is `msg_` and this id.
    DeliveryId
);
