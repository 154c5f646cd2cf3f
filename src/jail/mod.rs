//! Mechanism: the only place with namespaces, mounts, Landlock, seccomp,
//! capabilities and rlimits. [`spawn`] turns a [`Profile`](crate::profile::Profile)
//! into syscalls; the setup order reads top to bottom in `process.rs`.

mod bpf;
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

#[cfg(test)]
pub(crate) use bpf::tree as bpf_tree;
pub use confine::{confine_waiter, set_dumpable, set_undumpable};
pub use error::JailError;
pub use fs::FileId;
pub use process::{
    Child, Command, Function, Program, Status, default_signal_action, is_open, spawn,
};
pub use tty::{die_with_parent_on_exec, new_session_on_exec};

/// Gives the heap's free pages back to the kernel. A guest's `join` and
/// relay live as long as the guest and sit idle most of it: what their
/// start freed (argument parsing, the profile, the handshake) would
/// otherwise stay counted against every guest.
pub fn release_free_heap() {
    // SAFETY: malloc_trim only walks the C library's own heap and returns
    // pages no allocation uses.
    unsafe { libc::malloc_trim(0) };
}
