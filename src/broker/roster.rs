//! Who is in a share right now: every connected or waiting guest, with the
//! channel the host's orders (kick, mode change, warnings) reach its task
//! through, and the waiting guests' doors.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};

use super::protocol::{GuestState, GuestStatus, Which};
use crate::profile::Mode;

/// An order from the host to one guest's task.
#[derive(Debug)]
pub enum Order {
    /// Disconnect now, telling the guest why.
    Kick(String),
    /// Change mode; the answer says what happened (or why not).
    Mode(Mode, oneshot::Sender<Result<String, String>>),
    /// The host replaced the guest's invite: its terms apply now.
    Terms(Terms),
}

/// Which invite a guest was admitted under: an invite added again
/// (after a kick or a revoke) or replaced is another one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteId {
    /// Unix seconds.
    pub created: u64,
    /// Its key fingerprints.
    pub keys: Vec<String>,
}

/// What a replaced invite gives a connected guest.
#[derive(Debug, Clone)]
pub struct Terms {
    /// The new invite.
    pub id: InviteId,
    pub mode: Mode,
    /// Unix seconds.
    pub expires: u64,
    /// The key fingerprints it lists.
    pub keys: Vec<String>,
    /// The addresses or CIDRs it may connect from (empty: anywhere).
    pub from: Vec<String>,
}

/// The address of a guest's `ADDRESS:PORT` (`[v6]:port`, or v6
/// unbracketed, with or without a `%zone`).
fn source_ip(source: &str) -> Option<std::net::IpAddr> {
    let (addr, _port) = source.rsplit_once(':')?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let addr = addr.split_once('%').map_or(addr, |(a, _)| a);
    addr.parse().ok()
}

impl Terms {
    /// Why a connection made under the invite `was`, with `key` from
    /// `source` (`ADDRESS:PORT`, an IPv6 address unbracketed, as `join`
    /// gives it), is not one the terms would admit, if it is not. A
    /// connection whose key is not known (an invite of several keys, a
    /// forced command without `--key`) goes if any of the old keys did.
    pub fn refuses(
        &self,
        was: &InviteId,
        key: Option<&str>,
        source: Option<&str>,
    ) -> Option<&'static str> {
        let listed = |k: &String| self.keys.contains(k);
        let kept = match key {
            Some(k) => listed(&k.to_string()),
            None => was.keys.iter().all(listed),
        };
        if !kept {
            return Some("the host replaced your invite's keys");
        }
        if self.from.is_empty() {
            return None;
        }
        let ip = source.and_then(source_ip);
        match ip {
            Some(ip)
                if self
                    .from
                    .iter()
                    .any(|f| crate::keys::line::cidr_contains(f, ip)) =>
            {
                None
            }
            _ => Some("the host's new invite does not allow the address you connected from"),
        }
    }
}

/// The host's answer at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Admit(Option<Mode>),
    Deny,
}

struct Entry {
    status: GuestStatus,
    orders: mpsc::UnboundedSender<Order>,
    /// Set while the guest waits at the door.
    door: Option<oneshot::Sender<Answer>>,
    /// The pid of the process the broker started for this guest's tmux
    /// client (the client itself, or the jail it runs in).
    client: Option<u32>,
    /// Unix seconds of the guest's last input.
    last_input: u64,
}

#[derive(Default)]
pub struct Roster {
    guests: Mutex<BTreeMap<u64, Entry>>,
    /// Each invited name's join allowance: what is left of the burst, and
    /// when it was last counted. Only names with a live invite get here.
    joins: Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>,
}

/// Joins one name may make at once, then one every `JOIN_EVERY`: each join
/// and leave writes audit lines, notices and recording markers, and an
/// invited guest's script could loop them.
pub const JOIN_BURST: f64 = 20.0;
pub const JOIN_EVERY: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    #[error("no guest named {0} is in the session")]
    NoSuchGuest(String),
    #[error("{0} is not waiting at the door")]
    NotWaiting(String),
    #[error(
        "no connection of {0} waiting at the door has that key and address (see pairjail status)"
    )]
    NoneFits(String),
    #[error(
        "{n} connections of {guest} are waiting ({listed}): answer one with --key or --from (as shown), or each of them with --all"
    )]
    Ambiguous {
        guest: String,
        n: usize,
        listed: String,
    },
    #[error("the guest list is unavailable (a task panicked)")]
    Poisoned,
    #[error("{0} already has {MAX_CONNECTIONS} connections to this session: leave one first")]
    TooMany(String),
    #[error(
        "{0} joined this session too often (20 times, then one every 3 s): wait a few seconds and join again"
    )]
    TooOften(String),
}

/// Connections one guest may have at once: a few terminals, not a flood
/// (each costs the broker descriptors, and a mirror one of its own size a
/// tmux client and a screen).
pub const MAX_CONNECTIONS: usize = 8;

impl Roster {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<u64, Entry>>, RosterError> {
        self.guests.lock().map_err(|_| RosterError::Poisoned)
    }

    /// Takes one join from `name`'s allowance, or says it has none left.
    pub fn may_join(&self, name: &str) -> Result<(), RosterError> {
        self.may_join_at(name, std::time::Instant::now())
    }

    fn may_join_at(&self, name: &str, now: std::time::Instant) -> Result<(), RosterError> {
        let mut joins = self.joins.lock().map_err(|_| RosterError::Poisoned)?;
        let (left, at) = joins.entry(name.to_string()).or_insert((JOIN_BURST, now));
        let earned = now.saturating_duration_since(*at).as_secs_f64() / JOIN_EVERY.as_secs_f64();
        *left = (*left + earned).min(JOIN_BURST);
        *at = now;
        if *left < 1.0 {
            return Err(RosterError::TooOften(name.to_string()));
        }
        *left -= 1.0;
        Ok(())
    }

    /// Puts a guest on the list; returns the receiving end of its orders.
    pub fn add(
        &self,
        serial: u64,
        status: GuestStatus,
    ) -> Result<mpsc::UnboundedReceiver<Order>, RosterError> {
        let mut guests = self.lock()?;
        let same = guests
            .values()
            .filter(|e| e.status.name == status.name)
            .count();
        if same >= MAX_CONNECTIONS {
            return Err(RosterError::TooMany(status.name));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        guests.insert(
            serial,
            Entry {
                last_input: status.since,
                status,
                orders: tx,
                door: None,
                client: None,
            },
        );
        Ok(rx)
    }

    pub fn remove(&self, serial: u64) {
        if let Ok(mut g) = self.lock() {
            g.remove(&serial);
        }
    }

    /// Updates one guest's entry.
    pub fn update(&self, serial: u64, f: impl FnOnce(&mut GuestStatus)) {
        if let Ok(mut g) = self.lock()
            && let Some(e) = g.get_mut(&serial)
        {
            f(&mut e.status);
        }
    }

    /// Records the process of the guest's tmux client.
    pub fn set_client(&self, serial: u64, pid: Option<u32>) {
        if let Ok(mut g) = self.lock()
            && let Some(e) = g.get_mut(&serial)
        {
            e.client = pid;
        }
    }

    /// The guest typed something now.
    pub fn touch(&self, serial: u64, now: u64) {
        if let Ok(mut g) = self.lock()
            && let Some(e) = g.get_mut(&serial)
        {
            e.last_input = now;
        }
    }

    /// The processes of every guest's tmux client: not the host's.
    pub fn clients(&self) -> Vec<u32> {
        self.lock()
            .map(|g| g.values().filter_map(|e| e.client).collect())
            .unwrap_or_default()
    }

    /// Marks a guest as waiting; the returned receiver gets the answer.
    pub fn wait_at_door(&self, serial: u64) -> Result<oneshot::Receiver<Answer>, RosterError> {
        let (tx, rx) = oneshot::channel();
        let mut g = self.lock()?;
        let e = g
            .get_mut(&serial)
            .ok_or_else(|| RosterError::NoSuchGuest(serial.to_string()))?;
        e.status.state = GuestState::Waiting;
        e.door = Some(tx);
        Ok(rx)
    }

    /// The door of a connection closed (it was answered one way or
    /// another): nothing can answer it any more.
    pub fn close_door(&self, serial: u64) {
        if let Ok(mut g) = self.lock()
            && let Some(e) = g.get_mut(&serial)
        {
            e.door = None;
            e.status.state = GuestState::Connected;
        }
    }

    /// The host's answer for the waiting connection of `guest` that
    /// `which` names; for each that fits only with `which.all`.
    pub fn answer(&self, guest: &str, which: &Which, answer: Answer) -> Result<usize, RosterError> {
        let mut g = self.lock()?;
        let fits = |e: &Entry| {
            e.status.name == guest
                && e.door.is_some()
                && which
                    .key
                    .as_ref()
                    .is_none_or(|k| e.status.key.as_ref() == Some(k))
                // As the door's notice shows it: `local` for a connection
                // with no address.
                && which
                    .from
                    .as_ref()
                    .is_none_or(|f| e.status.source.as_deref().unwrap_or("local") == f)
        };
        let fitting: Vec<&Entry> = g.values().filter(|e| fits(e)).collect();
        if fitting.is_empty() {
            let waits = g
                .values()
                .any(|e| e.status.name == guest && e.door.is_some());
            return Err(if waits {
                RosterError::NoneFits(guest.to_string())
            } else {
                RosterError::NotWaiting(guest.to_string())
            });
        }
        if fitting.len() > 1 && !which.all {
            let listed = fitting
                .iter()
                .map(|e| {
                    format!(
                        "key {} from {}",
                        e.status.key.as_deref().unwrap_or("unknown"),
                        e.status.source.as_deref().unwrap_or("local")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(RosterError::Ambiguous {
                guest: guest.to_string(),
                n: fitting.len(),
                listed,
            });
        }
        let mut n = 0;
        for e in g.values_mut().filter(|e| fits(e)) {
            if let Some(door) = e.door.take() {
                let _ = door.send(answer);
                n += 1;
            }
        }
        Ok(n)
    }

    /// Sends an order to every connection of `guest`; how many got it.
    pub fn order(&self, guest: &str, make: impl Fn() -> Order) -> Result<usize, RosterError> {
        let g = self.lock()?;
        let mut n = 0;
        for e in g.values().filter(|e| e.status.name == guest) {
            if e.orders.send(make()).is_ok() {
                n += 1;
            }
        }
        if n == 0 {
            return Err(RosterError::NoSuchGuest(guest.to_string()));
        }
        Ok(n)
    }

    pub fn list(&self) -> Vec<GuestStatus> {
        let now = crate::clock::now();
        self.lock()
            .map(|g| {
                g.values()
                    .map(|e| GuestStatus {
                        idle: now.saturating_sub(e.last_input),
                        ..e.status.clone()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The status-line segment: `2 guests: bob(mirror) carol(pair)`;
    /// empty when nobody is in.
    pub fn summary(&self) -> String {
        summarize(&self.list())
    }
}

pub fn summarize(guests: &[GuestStatus]) -> String {
    let inside: Vec<String> = guests
        .iter()
        .map(|g| match g.state {
            GuestState::Connected => format!("{}({})", g.name, g.mode),
            GuestState::Waiting => format!("{}(waiting)", g.name),
        })
        .collect();
    match inside.len() {
        0 => String::new(),
        1 => format!("1 guest: {}", inside[0]),
        n => format!("{n} guests: {}", inside.join(" ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaced_terms_refuse_what_the_new_invite_does_not_list() {
        let id = |keys: &[&str]| InviteId {
            created: 1,
            keys: keys.iter().map(|k| k.to_string()).collect(),
        };
        let terms = |keys: &[&str], from: &[&str]| Terms {
            id: id(keys),
            mode: Mode::Mirror,
            expires: 2,
            keys: keys.iter().map(|k| k.to_string()).collect(),
            from: from.iter().map(|f| f.to_string()).collect(),
        };
        let was = id(&["A", "B"]);
        assert_eq!(terms(&["A"], &[]).refuses(&was, Some("A"), None), None);
        assert!(terms(&["B"], &[]).refuses(&was, Some("A"), None).is_some());
        // A key not known: out if any old key is gone, not for an expiry.
        assert!(terms(&["A"], &[]).refuses(&was, None, None).is_some());
        assert_eq!(terms(&["A", "B", "C"], &[]).refuses(&was, None, None), None);
        // Addresses as join gives them: IPv6 unbracketed (a review found
        // every IPv6 guest refused).
        let v6 = terms(&["A"], &["2001:db8::/32"]);
        assert_eq!(v6.refuses(&was, Some("A"), Some("2001:db8::5:51234")), None);
        assert_eq!(
            v6.refuses(&was, Some("A"), Some("[2001:db8::5]:51234")),
            None
        );
        assert!(
            v6.refuses(&was, Some("A"), Some("2001:db9::5:51234"))
                .is_some()
        );
        let v4 = terms(&["A"], &["10.0.0.0/8"]);
        assert_eq!(v4.refuses(&was, Some("A"), Some("10.1.2.3:40000")), None);
        assert!(
            v4.refuses(&was, Some("A"), Some("192.0.2.1:40000"))
                .is_some()
        );
        assert!(v4.refuses(&was, Some("A"), None).is_some());
    }

    #[test]
    fn a_guest_joining_in_a_loop_is_held_to_its_allowance() {
        let r = Roster::default();
        let t0 = std::time::Instant::now();
        for _ in 0..JOIN_BURST as usize {
            r.may_join_at("loop", t0).unwrap();
        }
        assert!(matches!(
            r.may_join_at("loop", t0),
            Err(RosterError::TooOften(n)) if n == "loop"
        ));
        // Another name has its own allowance; time gives one back.
        r.may_join_at("other", t0).unwrap();
        assert!(r.may_join_at("loop", t0 + JOIN_EVERY / 2).is_err());
        let later = t0 + JOIN_EVERY * 2;
        r.may_join_at("loop", later).unwrap();
        r.may_join_at("loop", later).unwrap();
        assert!(r.may_join_at("loop", later).is_err());
    }

    fn g(name: &str, mode: Mode, state: GuestState) -> GuestStatus {
        GuestStatus {
            name: name.into(),
            mode,
            since: 0,
            source: None,
            key: None,
            idle: 0,
            state,
            expires: None,
        }
    }

    #[test]
    fn the_summary_names_each_guest_with_its_mode() {
        assert_eq!(summarize(&[]), "");
        assert_eq!(
            summarize(&[g("bob", Mode::Mirror, GuestState::Connected)]),
            "1 guest: bob(mirror)"
        );
        assert_eq!(
            summarize(&[
                g("bob", Mode::Mirror, GuestState::Connected),
                g("carol", Mode::Pair, GuestState::Connected),
                g("dan", Mode::Pair, GuestState::Waiting),
            ]),
            "3 guests: bob(mirror) carol(pair) dan(waiting)"
        );
    }

    #[test]
    fn a_guest_gets_a_few_connections_not_a_flood() {
        let r = Roster::default();
        for serial in 0..MAX_CONNECTIONS as u64 {
            r.add(serial, g("bob", Mode::Mirror, GuestState::Connected))
                .unwrap();
        }
        let more = r.add(100, g("bob", Mode::Mirror, GuestState::Connected));
        assert!(matches!(more, Err(RosterError::TooMany(n)) if n == "bob"));
        // Others are not counted against bob, and a connection that ends
        // frees its place.
        r.add(101, g("carol", Mode::Mirror, GuestState::Connected))
            .unwrap();
        r.remove(0);
        r.add(102, g("bob", Mode::Mirror, GuestState::Connected))
            .unwrap();
    }

    #[test]
    fn orders_reach_every_connection_of_a_guest_and_no_one_else() {
        let r = Roster::default();
        let mut a = r
            .add(1, g("bob", Mode::Pair, GuestState::Connected))
            .unwrap();
        let mut b = r
            .add(2, g("bob", Mode::Pair, GuestState::Connected))
            .unwrap();
        let mut c = r
            .add(3, g("carol", Mode::Pair, GuestState::Connected))
            .unwrap();
        assert_eq!(r.order("bob", || Order::Kick("bye".into())).unwrap(), 2);
        assert!(matches!(a.try_recv(), Ok(Order::Kick(_))));
        assert!(matches!(b.try_recv(), Ok(Order::Kick(_))));
        assert!(c.try_recv().is_err());
        assert!(matches!(
            r.order("dave", || Order::Kick(String::new())),
            Err(RosterError::NoSuchGuest(_))
        ));
        let any = Which::default();
        assert!(matches!(
            r.answer("carol", &any, Answer::Deny),
            Err(RosterError::NotWaiting(_))
        ));
        let door = r.wait_at_door(3).unwrap();
        assert_eq!(r.answer("carol", &any, Answer::Admit(None)).unwrap(), 1);
        assert_eq!(door.blocking_recv().unwrap(), Answer::Admit(None));
        // Two of bob's connections wait: a name alone answers neither.
        let (door1, door2) = (r.wait_at_door(1).unwrap(), r.wait_at_door(2).unwrap());
        let refused = r.answer("bob", &any, Answer::Deny).unwrap_err().to_string();
        assert!(
            refused.starts_with("2 connections of bob are waiting"),
            "{refused}"
        );
        // `local`, as the notice shows a connection with no address, fits
        // both (neither has one), and an address neither has fits none.
        let local = Which {
            from: Some("local".into()),
            ..Which::default()
        };
        let refused = r
            .answer("bob", &local, Answer::Deny)
            .unwrap_err()
            .to_string();
        assert!(
            refused.starts_with("2 connections of bob are waiting"),
            "{refused}"
        );
        let elsewhere = Which {
            from: Some("192.0.2.1:22".into()),
            ..Which::default()
        };
        assert!(matches!(
            r.answer("bob", &elsewhere, Answer::Deny),
            Err(RosterError::NoneFits(_))
        ));
        let all = Which {
            all: true,
            ..Which::default()
        };
        assert_eq!(r.answer("bob", &all, Answer::Deny).unwrap(), 2);
        assert_eq!(door1.blocking_recv().unwrap(), Answer::Deny);
        assert_eq!(door2.blocking_recv().unwrap(), Answer::Deny);
    }
}
