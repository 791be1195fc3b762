//! ION contact plans (router/core/src/contact.rs) and contact-graph routing
//! over whatever plan parses.
//!
//! Input: the plan's text. Properties:
//! - every contact that parses has its end after its start, and the plan
//!   lists contacts by start time;
//! - written back as ION `a contact` lines, the plan parses to the same
//!   contacts (light times aside: ranges are not written back);
//! - every route CGR finds starts at the local node, chains contact to
//!   contact, ends at the destination, and arrives no earlier than it leaves.
#![no_main]

use std::fmt::Write;
use std::sync::Arc;

use ferry_core::contact::{Contact, ContactPlan};
use ferry_core::router::cgr::Cgr;
use ferry_core::Eid;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(plan) = ContactPlan::parse_ion(&text, "fuzz", 0) else { return };
    let contacts = plan.contacts();
    for c in contacts {
        assert!(c.end > c.start, "{c:?}");
        assert!((0.0..=1.0).contains(&c.confidence));
    }
    assert!(contacts.windows(2).all(|w| w[0].start <= w[1].start), "contacts out of order");
    check_rewrite(contacts);
    check_routes(&plan);
});

fn ipn(e: &Eid) -> Option<u64> {
    match e {
        Eid::Ipn { node, .. } => Some(*node),
        _ => None,
    }
}

fn check_rewrite(contacts: &[Contact]) {
    let mut text = String::new();
    for c in contacts {
        if c.start % 1000 != 0 || c.end % 1000 != 0 {
            return; // a saturated time (+huge seconds) has no exact `+s` form
        }
        let (Some(from), Some(to)) = (ipn(&c.from), ipn(&c.to)) else { panic!("a non-ipn node in {c:?}") };
        let _ = writeln!(
            text,
            "a contact +{} +{} {from} {to} {} {}",
            c.start / 1000,
            c.end / 1000,
            c.rate_bps,
            c.confidence
        );
    }
    let again = match ContactPlan::parse_ion(&text, "rewritten", 0) {
        Ok(p) => p,
        Err(e) => panic!("a rewritten plan does not parse: {e}\n{text}"),
    };
    let strip = |c: &Contact| (c.from.clone(), c.to.clone(), c.start, c.end, c.rate_bps, c.confidence.to_bits());
    let a: Vec<_> = contacts.iter().map(strip).collect();
    let b: Vec<_> = again.contacts().iter().map(strip).collect();
    assert_eq!(a, b, "a rewritten plan has other contacts");
}

fn check_routes(plan: &ContactPlan) {
    let contacts = plan.contacts();
    let Some(first) = contacts.first() else { return };
    let local = first.from.clone();
    let mut dests: Vec<Eid> = contacts.iter().map(|c| c.to.clone()).collect();
    dests.sort();
    dests.dedup();
    let cgr = Cgr::new(local.clone(), Arc::new(plan.clone()));
    let times = [0, contacts[contacts.len() / 2].start];
    for dest in dests.iter().take(8) {
        for now in times {
            for size in [1, 100_000] {
                let Some(route) = cgr.route(now, dest, size, None) else { continue };
                assert_eq!(route.hops.first(), Some(&route.first_hop));
                let mut at = &local;
                let mut leave = now;
                for &hop in &route.hops {
                    let Some(c) = plan.get(hop) else { panic!("route through a contact that does not exist") };
                    assert_eq!(&c.from, at, "route does not chain");
                    assert!(c.end >= leave, "route uses a contact that was over at {leave}: {c:?}");
                    leave = leave.max(c.start);
                    at = &c.to;
                }
                assert_eq!(at, dest, "route ends elsewhere");
                assert!(route.arrival >= leave, "arrives at {} before leaving at {leave}", route.arrival);
            }
        }
    }
}
