//! Who may join: guest keys, invites, the authorized_keys lines that let
//! them in (a managed block, or lines served to sshd), and key import.

pub mod authorized;
pub mod block;
pub mod book;
pub mod fetch;
pub mod invites;
pub mod key;
pub mod line;
pub mod registry;
pub mod request;
