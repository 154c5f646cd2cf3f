//! pairjail: share a tmux session over SSH, each guest in a jail.
//!
//! Policy (`profile`) is data; mechanism (`jail`) is code; `commands` are
//! thin wrappers the CLI (`cli`) dispatches to.

#![deny(unsafe_code)]

pub mod audit;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod doctor;
pub mod exe;
pub mod files;
pub mod guest;
#[allow(unsafe_code)]
pub mod jail;
pub mod json_line;
pub mod keys;
pub mod lookup;
pub mod mountinfo;
pub mod profile;
pub mod reach;
pub mod realpath;
pub mod record;
pub mod relay;
pub mod setup;
pub mod terminal;
pub mod unix_sockets;
pub mod users;
pub mod workspaces;
