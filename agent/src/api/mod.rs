//! The local unix-socket API between the CNI plugin / CLI and the agent.
//!
//! Wire format: one JSON object per line each way, one request per connection. Every message
//! carries `v` (the protocol version); an agent answers a version it does not speak with
//! [`ErrorKind::UnsupportedVersion`] instead of guessing.

pub mod client;
pub mod rows;
pub mod types;

pub use client::{Client, ClientError};
pub use rows::*;
pub use types::*;

/// Protocol version spoken by this build. Bump on any incompatible change of [`Request`] or
/// [`Response`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Default path of the agent's socket.
pub const DEFAULT_SOCKET: &str = "/run/weft/weft.sock";
