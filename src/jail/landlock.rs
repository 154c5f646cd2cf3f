//! Step 12: Landlock, with the ABI the profile pins. `compat = "hard"` fails
//! closed when the kernel cannot enforce every right of that ABI.

use std::os::fd::BorrowedFd;
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};

use super::error::JailError;
use crate::profile::{self, Compat, Profile};

fn abi(n: u8) -> ABI {
    match n {
        1 => ABI::V1,
        2 => ABI::V2,
        3 => ABI::V3,
        4 => ABI::V4,
        5 => ABI::V5,
        6 => ABI::V6,
        7 => ABI::V7,
        8 => ABI::V8,
        _ => ABI::V9,
    }
}

/// The kernel's Landlock ABI, 0 if Landlock is off.
pub fn kernel_abi() -> i64 {
    // SAFETY: landlock_create_ruleset with a NULL attr, size 0 and the
    // VERSION flag only returns the ABI number; no memory is passed.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    v.max(0)
}

/// Checked in the parent so the error is clear and nothing was set up yet.
pub fn check_support(p: &Profile) -> Result<(), JailError> {
    if !p.landlock.enabled || p.landlock.compat != Compat::Hard {
        return Ok(());
    }
    let have = kernel_abi();
    if have < i64::from(p.landlock.abi) {
        return Err(JailError::msg(
            "landlock",
            format!(
                "the profile pins Landlock ABI {} with compat = \"hard\", but this kernel offers {} (boot with lsm=…,landlock, or use compat = \"best-effort\")",
                p.landlock.abi,
                if have == 0 {
                    "none".to_string()
                } else {
                    format!("ABI {have}")
                }
            ),
        ));
    }
    Ok(())
}

fn e(call: &str) -> impl Fn(landlock::RulesetError) -> JailError + '_ {
    move |err| JailError::msg(format!("landlock: {call}"), err.to_string())
}

/// Restricts the calling process: the profile's path rules, no TCP, the
/// scopes asked for, and exec of exactly the program file `exe` (None: a
/// program that is called, not executed, so nothing may be).
pub fn restrict(
    p: &Profile,
    params: &std::collections::BTreeMap<String, String>,
    exe: Option<BorrowedFd>,
) -> Result<(), JailError> {
    let ll = &p.landlock;
    if !ll.enabled {
        return Ok(());
    }
    let abi = abi(ll.abi);
    let compat = match ll.compat {
        Compat::Hard => CompatLevel::HardRequirement,
        Compat::BestEffort => CompatLevel::BestEffort,
    };
    let mut rs = Ruleset::default()
        .set_compatibility(compat)
        .handle_access(AccessFs::from_all(abi))
        .map_err(e("handle_access(fs)"))?;
    if ll.abi >= 4 {
        rs = rs
            .handle_access(AccessNet::from_all(abi))
            .map_err(e("handle_access(net)"))?;
    }
    let mut scopes = landlock::BitFlags::<Scope>::empty();
    for s in &ll.scopes {
        scopes |= match s {
            profile::Scope::AbstractUnixSocket => Scope::AbstractUnixSocket,
            profile::Scope::Signal => Scope::Signal,
        };
    }
    if !scopes.is_empty() {
        rs = rs.scope(scopes).map_err(e("scope"))?;
    }
    let mut created = rs.create().map_err(e("create_ruleset"))?;

    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    let read_exec = read | AccessFs::Execute;
    let write = AccessFs::from_all(abi) & !AccessFs::Execute;
    for (list, access) in [
        (&ll.read, read),
        (&ll.read_exec, read_exec),
        (&ll.write, write),
    ] {
        for raw in list {
            let path = profile::expand(raw, params).map_err(|m| JailError::msg("landlock", m))?;
            // A path the profile made optional may be absent from this jail.
            let Ok(fd) = PathFd::new(Path::new(&path)) else {
                continue;
            };
            let access = if Path::new(&path).is_dir() {
                access
            } else {
                access & AccessFs::from_file(abi)
            };
            created = created
                .add_rule(PathBeneath::new(fd, access))
                .map_err(|err| {
                    JailError::msg(format!("landlock: add_rule({path})"), err.to_string())
                })?;
        }
    }
    if let Some(exe) = exe {
        created = created
            .add_rule(PathBeneath::new(
                exe,
                AccessFs::Execute | AccessFs::ReadFile,
            ))
            .map_err(e("add_rule(program)"))?;
    }
    let status = created.restrict_self().map_err(e("restrict_self"))?;
    if ll.compat == Compat::Hard && status.ruleset != RulesetStatus::FullyEnforced {
        return Err(JailError::msg(
            "landlock: restrict_self",
            format!(
                "ruleset only {:?} on this kernel and compat = \"hard\"",
                status.ruleset
            ),
        ));
    }
    Ok(())
}
