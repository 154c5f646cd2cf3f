//! A seccomp plan as BPF, built by libseccomp with its binary-tree
//! optimiser. build.rs compiles this file too: it builds the built-in
//! profiles' filters ahead of time (see `profile::compiled`), so at run
//! time only other profiles pay for libseccomp's work.

use std::io::{Read, Seek, SeekFrom};

use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};

use crate::profile::Action;
use crate::profile::plan::{ArgCheck, SeccompPlan};

fn action(a: Action) -> ScmpAction {
    match a {
        Action::Errno(n) => ScmpAction::Errno(n as i32),
        Action::KillProcess => ScmpAction::KillProcess,
        Action::Trap => ScmpAction::Trap,
        Action::Log => ScmpAction::Log,
    }
}

/// A check as alternatives (any one allows), each a list of comparisons
/// that must all hold. libseccomp compares 64-bit arguments; a mask of
/// 0xffff_ffff makes it a comparison of the low 32 bits.
fn alternatives(check: ArgCheck) -> Vec<Vec<ScmpArgCompare>> {
    let low32 = ScmpCompareOp::MaskedEqual(0xffff_ffff);
    match check {
        ArgCheck::Low32Eq { index, value } => {
            vec![vec![ScmpArgCompare::new(index as u32, low32, value)]]
        }
        ArgCheck::NoBits { index, mask } => vec![vec![ScmpArgCompare::new(
            index as u32,
            ScmpCompareOp::MaskedEqual(mask),
            0,
        )]],
        ArgCheck::AllBits { index, mask } => vec![vec![ScmpArgCompare::new(
            index as u32,
            ScmpCompareOp::MaskedEqual(mask),
            mask,
        )]],
        // libseccomp has no masked "not equal" and takes one comparison
        // per argument in a rule (and an unconditional rule swallows a
        // conditional one of another action): the low 32 bits differ from
        // the value exactly when one of those bits does. 32 rules, about
        // 95 of the filter's instructions, only on this syscall's branch.
        ArgCheck::Low32Ne { index, value } => (0..32)
            .map(|bit| {
                let b = 1u64 << bit;
                vec![ScmpArgCompare::new(
                    index as u32,
                    ScmpCompareOp::MaskedEqual(b),
                    !value & b,
                )]
            })
            .collect(),
    }
}

/// The plan's filter as BPF instructions (8 bytes each, native order).
pub fn tree(plan: &SeccompPlan) -> Result<Vec<u8>, String> {
    let err = |e: libseccomp::error::SeccompError| e.to_string();
    // Level 3 (kernel 4.14: KILL_PROCESS and LOG) is all these filters use;
    // saying so spares libseccomp nine probing syscalls per jail.
    libseccomp::set_api(3).map_err(err)?;
    let mut ctx = ScmpFilterContext::new(action(plan.default_action)).map_err(err)?;
    // The context holds the native architecture (x86_64) only; any other
    // (i386 through int 0x80, x32) is killed, not given the default.
    ctx.set_act_badarch(ScmpAction::KillProcess).map_err(err)?;
    ctx.set_ctl_optimize(2).map_err(err)?;
    for r in &plan.rules {
        let nr = i32::try_from(r.nr).map_err(|e| e.to_string())?;
        let syscall = ScmpSyscall::from(nr);
        if r.any_of.is_empty() {
            ctx.add_rule_exact(ScmpAction::Allow, syscall)
                .map_err(err)?;
            continue;
        }
        for check in &r.any_of {
            for all in alternatives(*check) {
                ctx.add_rule_conditional_exact(ScmpAction::Allow, syscall, &all)
                    .map_err(err)?;
            }
        }
    }
    for r in &plan.refused {
        let nr = i32::try_from(r.nr).map_err(|e| e.to_string())?;
        let refuse = ScmpAction::Errno(r.errno as i32);
        let syscall = ScmpSyscall::from(nr);
        match r.when {
            None => {
                ctx.add_rule_exact(refuse, syscall).map_err(err)?;
            }
            Some(check) => {
                for all in alternatives(check) {
                    ctx.add_rule_conditional_exact(refuse, syscall, &all)
                        .map_err(err)?;
                }
            }
        }
    }
    export(&ctx)
}

/// Through a memory file: libseccomp 2.5 exports only to a descriptor.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>, String> {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let fd =
        nix::sys::memfd::memfd_create(c"pairjail-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| text(&e))?;
    let mut file = std::fs::File::from(fd);
    ctx.export_bpf(&file).map_err(|e| text(&e))?;
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0)).map_err(|e| text(&e))?;
    file.read_to_end(&mut bytes).map_err(|e| text(&e))?;
    if bytes.is_empty() || bytes.len() % 8 != 0 {
        return Err(format!("libseccomp exported {} bytes", bytes.len()));
    }
    Ok(bytes)
}
