//! Host side: the dedicated tmux server, session state, the relay of each
//! guest's terminal, and the protocol spoken with `pairjail join`.

pub mod liveness;
pub mod paths;
pub mod protocol;
pub mod server;
pub mod share;
pub mod tmux;
pub mod workspace;
