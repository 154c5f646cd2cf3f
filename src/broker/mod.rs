//! Host side: the dedicated tmux server, session state, the relay of each
//! guest's terminal, and the protocol spoken with `pairjail join`.

pub mod altscreen;
pub mod audience;
pub mod door;
pub mod guest;
pub mod home_links;
pub mod host_client;
pub mod listener;
pub mod liveness;
pub mod notices;
pub mod outbox;
pub mod paths;
pub mod protocol;
pub mod recorder;
pub mod roster;
pub mod run_lock;
pub mod server;
pub mod share;
pub mod state;
pub mod tmux;
pub mod tunnel;
pub mod tunnel_task;
pub mod workspace;
