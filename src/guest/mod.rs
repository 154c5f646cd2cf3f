//! Guest side: what runs in the guest's sshd session before the jail.

pub mod join;
pub mod pair_shell;
