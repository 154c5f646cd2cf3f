//! Mechanism: the only place with namespaces, mounts, Landlock, seccomp,
//! capabilities and rlimits. [`spawn`] turns a [`Profile`](crate::profile::Profile)
//! into syscalls; the setup order reads top to bottom in `process.rs`.

mod caps;
mod confine;
mod error;
mod fs;
pub mod landlock;
mod limits;
pub mod probe;
mod process;
mod seccomp;
mod sys;
pub mod tty;

pub use confine::{confine_waiter, set_undumpable};
pub use error::JailError;
pub use process::{Child, Command, Status, claim_passed_fd, is_open, spawn};
pub use tty::die_with_parent_on_exec;
