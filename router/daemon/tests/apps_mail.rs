//! The email app between real ferryd processes over the TCP plugin: `ferry
//! mail` on node a delivers into Maildirs on b, c and a itself (several
//! recipients, several nodes, a 10 MiB attachment, `-t` with Bcc, the outbox
//! folder), and mail that cannot be delivered comes back as a bounce.

mod api_support;
mod apps_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use apps_support::{app_block, ferry, ferry_ok, free_port, node, tcp_cla};

const WAIT: Duration = Duration::from_secs(90);

/// The email app's config block, with its folders under `root`.
fn email_app(root: &Path, lifetime: &str) -> String {
    let mail = root.join("mail");
    let state = root.join("state");
    let outbox = root.join("outbox");
    app_block(
        "email",
        "email",
        &["mail", "mail-submit"],
        &format!(
            "memory = \"256MiB\"\n[app.dirs]\n\"/mail\" = \"{}\"\n\"/state\" = \"{}\"\n\"/outbox\" = \"{}\"\n\
             [app.config]\noutbox = \"/outbox\"\nlifetime = \"{lifetime}\"\n",
            mail.display(),
            state.display(),
            outbox.display()
        ),
    )
}

/// Makes a user's Maildir (the app delivers only to existing ones).
fn mailbox(root: &Path, user: &str) -> PathBuf {
    let m = root.join("mail").join(user);
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(m.join(sub)).unwrap();
    }
    m
}

/// The messages in a Maildir's new/, oldest first.
fn messages(maildir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(maildir.join("new")) {
        Ok(d) => d.flatten().map(|e| e.path()).collect(),
        Err(_) => vec![],
    };
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn wait_messages(node: &api_support::Ferryd, maildir: &Path, n: usize) -> Vec<Vec<u8>> {
    node.eventually(&format!("{n} messages in {}", maildir.display()), WAIT, || messages(maildir).len() >= n);
    let got = messages(maildir);
    assert_eq!(got.len(), n, "{}", maildir.display());
    assert!(std::fs::read_dir(maildir.join("tmp")).unwrap().next().is_none(), "tmp/ is left empty");
    got
}

fn text(m: &[u8]) -> String {
    String::from_utf8_lossy(m).into_owned()
}

/// A MIME message with a binary attachment of `len` bytes, base64.
fn message_with_attachment(to: &str, subject: &str, len: usize) -> Vec<u8> {
    use base64::Engine as _;
    let data = api_support::binary_payload(len);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    let mut body = String::new();
    for chunk in b64.as_bytes().chunks(76) {
        body.push_str(std::str::from_utf8(chunk).unwrap());
        body.push('\n');
    }
    format!(
        "From: Alice <alice@a>\nTo: {to}\nSubject: {subject}\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"XX\"\n\n--XX\nContent-Type: text/plain\n\nSee attached.\n\
         --XX\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n{body}--XX--\n"
    )
    .into_bytes()
}

#[test]
fn mail_travels_between_nodes_into_maildirs_and_bounces_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let (ra, rb, rc) = (dir.path().join("a-root"), dir.path().join("b-root"), dir.path().join("c-root"));
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let b = node(dir.path(), "b", &(tcp_cla(pb, &[]) + &email_app(&rb, "7d")));
    let c = node(dir.path(), "c", &(tcp_cla(pc, &[]) + &email_app(&rc, "7d")));
    // a's mail lives 20 s, so that mail to a node that never shows up bounces soon.
    let a = node(dir.path(), "a", &(tcp_cla(pa, &[pb, pc]) + &email_app(&ra, "20s")));
    let (alice, bob, carol, dave) =
        (mailbox(&ra, "alice"), mailbox(&rb, "bob"), mailbox(&rb, "carol"), mailbox(&rc, "dave"));
    a.eventually("sessions to b and c", WAIT, || {
        let peers = a.get("/status/peers").json();
        peers["dtn://b/"]["connected"] == true && peers["dtn://c/"]["connected"] == true
    });

    // 1. Several recipients on several nodes (and this one), 10 MiB attached.
    let big = message_with_attachment("bob@b, carol@b", "the big one", 10 << 20);
    ferry_ok(&a, &["mail", "-f", "alice", "-oi", "--", "bob@b", "carol@b", "dave@c", "alice@a"], &big);
    for (n, maildir, user, node_name) in
        [(&b, &bob, "bob", "b"), (&b, &carol, "carol", "b"), (&c, &dave, "dave", "c"), (&a, &alice, "alice", "a")]
    {
        let got = wait_messages(n, maildir, 1);
        let m = &got[0];
        assert!(m.ends_with(&big), "{user}: the message arrives unchanged after the added headers");
        let head = text(&m[..m.len() - big.len()]);
        assert!(head.starts_with("Return-Path: <alice@a>\n"), "{head}");
        assert!(head.contains(&format!("Delivered-To: {user}@{node_name}\n")), "{head}");
        assert!(head.contains(&format!("by {node_name} (dtn://{node_name}/mail) with Ferry BPv7")), "{head}");
        assert!(head.contains(&format!("for <{user}@{node_name}>; ")), "{head}");
    }

    // 2. sendmail -t: recipients from the headers, Bcc removed.
    let msg = b"From: alice@a\nTo: bob@b\nBcc: carol@b\nSubject: minutes\n\nHello.\n".to_vec();
    ferry_ok(&a, &["mail", "-t", "-f", "alice@a"], &msg);
    for maildir in [&bob, &carol] {
        let got = wait_messages(&b, maildir, 2);
        let m = text(got.iter().find(|m| text(m).contains("Subject: minutes")).expect("the -t mail"));
        assert!(!m.contains("Bcc:"), "{m}");
        assert!(m.ends_with("To: bob@b\nSubject: minutes\n\nHello.\n"), "{m}");
    }

    // 3. A message dropped in the outbox folder.
    let outbox = ra.join("outbox");
    std::fs::write(outbox.join(".new"), b"From: alice@a\nTo: dave@c\nSubject: from the outbox\n\nHi.\n").unwrap();
    std::fs::rename(outbox.join(".new"), outbox.join("msg1")).unwrap();
    let got = wait_messages(&c, &dave, 2);
    assert!(got.iter().any(|m| text(m).contains("Subject: from the outbox")));
    a.eventually("the outbox to empty", WAIT, || std::fs::read_dir(&outbox).unwrap().next().is_none());

    // 4. No such user on b: bounced back to alice by b.
    ferry_ok(&a, &["mail", "-f", "alice", "nobody@b"], b"Subject: hello?\n\nAnyone?\n");
    let got = wait_messages(&a, &alice, 2);
    let bounce = text(got.iter().find(|m| text(m).contains("No mailbox here")).expect("a bounce"));
    assert!(bounce.contains("Subject: Undelivered Mail Returned to Sender"), "{bounce}");
    assert!(bounce.contains("nobody@b") && bounce.contains("Subject: hello?"), "{bounce}");

    // 5. A node that never shows up: the bundle's lifetime ends, its deletion
    //    report comes back, and alice gets a bounce naming the reason.
    ferry_ok(&a, &["mail", "-f", "alice", "zed@faraway"], b"Subject: into the void\n\nHello?\n");
    let got = wait_messages(&a, &alice, 3);
    let bounce = text(got.iter().find(|m| text(m).contains("lifetime expired")).expect("an expiry bounce"));
    assert!(bounce.contains("zed@faraway") && bounce.contains("Subject: into the void"), "{bounce}");
    // Later reports about the same bundle (copies elsewhere) bounce nothing more.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(messages(&alice).len(), 3);

    // sendmail exit codes: 64 without recipients, 65 for a bad address.
    let out = ferry(&a, &["mail"], b"x");
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stderr));
    let out = ferry(&a, &["mail", "not-an-address"], b"x");
    assert_eq!(out.status.code(), Some(65));
}
