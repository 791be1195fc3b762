//! Ferry's USB-folder convergence layer: store-carry-forward through a
//! folder — a USB stick carried between sites, an SD card, a Syncthing folder.
//!
//! Built as a `cdylib` it is a Ferry CLA plugin (ABI 1, see
//! [`ferry_cla_abi`]); as an `rlib` the same plugin runs in-process through
//! [`DESCRIPTOR`], and the `ferry` CLI uses its naming rules.
//!
//! # Layout
//! Sans-IO parts (no threads, no clock; the inbox touches no file):
//! - [`name`]: node IDs as folder names, bundle and part file names;
//! - [`inbox`]: what to do with the files of a mailbox, scan after scan, and
//!   the check of a file's bytes;
//! - [`settings`]: the settings table.
//!
//! With I/O:
//! - [`durable`]: making a batch of written files durable, then their renames;
//! - [`taken`]: the record of bundles taken, on this node's disk;
//! - [`sync`]: the progress file of a `ferry usb sync` request;
//! - [`plugin`]: [`UsbDir`], the [`ferry_cla_abi::Cla`] implementation, its
//!   worker thread and its threading and ownership rules.
//!
//! # The folder
//!
//! ```text
//! <folder>/
//!   dtn-town/                 the mailbox of dtn://town/
//!     dtn-camp/               what dtn://camp/ left for it
//!       9f86d0…15ad.bundle    one bundle; the name is the SHA-256 of its bytes
//!   dtn-camp/                 the mailbox of dtn://camp/
//!     .ferry-sync.toml        progress of `ferry usb sync` (camp's own)
//!   ipn-7/                    the mailbox of ipn:7.0
//! ```
//!
//! Layout `<to-node>/<from-node>/<file>`, like nncp-xfer's. Node IDs are
//! encoded so that FAT32 and exFAT sticks take them, reversibly:
//! `dtn://camp/` is `dtn-camp`, `ipn:7.0` is `ipn-7`, and bytes other than
//! lowercase letters, digits, `-` and inner `.` are `_` plus two hex digits
//! (`dtn://Camp/` is `dtn-_43amp`); see [`name`].
//!
//! **Reading.** A node takes bundles from its own mailbox only
//! (`<folder>/<its node>/*/`); every other mailbox is left to its owner. A
//! file is handed to the node only after its bytes hash to its name and
//! decode as a valid bundle (ferry-core's codec, the node's own leniency).
//! It is removed only after the node says the bundle is durable in its
//! store (the ABI's `Accepted` or `Duplicate` verdict) and its bundle ID has
//! been recorded (synced) in this node's record of taken bundles. That record
//! (`state_dir`) keeps the IDs until the bundles expire, so a file copied
//! back onto a stick, or found on a second stick, is removed without being
//! delivered twice — even after the first copy was delivered and deleted.
//!
//! A truncated, half-copied, damaged or junk file, an unfinished `.part`
//! file, a file over `max_bundle_size` or one the node refuses (expired) is
//! never delivered and never deleted: it stays where it is and is reported
//! once in ferryd's log (again only if it changes or comes back). A later
//! complete copy under the same name is read again and wins.
//!
//! **Writing.** A bundle goes to `<folder>/<to>/<this node>/<sha256>.<n>.part`;
//! then, for all files written meanwhile at once, their bytes are made
//! durable, they are renamed to `<sha256>.bundle`, and the folders holding
//! them are synced (see [`durable`]). On a stick (a filesystem other than
//! the one holding `state_dir`) a batch is synced with one `syncfs(2)` and a
//! sync of its folders: one device flush for the whole batch. On the node's
//! own disk, where other programs' dirty data would be written too, only a
//! batch of 64 files or more is; smaller ones get an `fdatasync` per file,
//! side by side. The transmission counts as sent
//! only after that; if anything fails (the stick is pulled mid-write) it is
//! reported failed and the node sends the bundle again at the next
//! opportunity, so nothing is lost, and a file stopped before its rename is
//! a `.part` file no reader takes. A bundle already on the stick for that
//! node (same bundle ID written this session, or the same bytes already
//! there) is not written twice.
//!
//! **Presence.** The folder is looked at every `poll_interval_ms`. When it
//! appears (a stick is plugged in), this node's mailbox is created on it and
//! every other mailbox becomes a peer of the node; when it disappears, they
//! go down. `ferry usb sync PATH` (through ferryd's API, and the plugin's
//! `connect` with `usbdir-sync:NONCE:PATH`) looks right away, at the
//! configured folder or at any other, then every 250 ms (or
//! `poll_interval_ms` if shorter) until nothing has moved for two looks, and
//! reports progress.
//!
//! # Who carries what: peers and the data mule
//!
//! The plugin decides nothing about routing. Each mailbox on the stick is
//! a peer whose node ID is the mailbox's owner, and the node's router picks
//! what goes into it, exactly as for a TCP neighbour:
//!
//! - with `router = "static"`, a bundle goes into the mailbox of its
//!   destination node if the stick has one, else into the mailbox of the
//!   first matching route's `via` node — so a camp writes everything for the
//!   outside world into the gateway's mailbox with `pattern = "*"`;
//! - with `router = "epidemic"` (the default), every bundle for another node
//!   goes into every mailbox on the stick that does not have it yet (each
//!   node takes its copy); once it reached its destination's mailbox the
//!   sender drops it.
//!
//! A **data mule** is then just a node: a laptop running ferryd with this
//! plugin takes bundles addressed to it — and, because other nodes' routers
//! chose it as next hop, bundles for nodes behind it — from its own mailbox,
//! stores them, and writes them into the right mailbox of the next stick it
//! sees (or sends them over TCP). A bundle a node took from a sender's
//! folder is not written back to that sender (the node knows where it came
//! from). `nodes` lists nodes whose mailboxes should be used even before the
//! stick has visited them (created on the first write, like nncp-xfer's
//! `-mkdir`); `announce = "listed"` restricts the peers to those, for a stick
//! shared by many nodes where this node should carry for a few.
//!
//! # Configuring it in ferryd
//!
//! ```toml
//! [[cla]]
//! path = "/usr/lib/ferry/libferry_cla_usbdir.so"
//! [cla.settings]
//! path = "/media/usb/ferry"            # the stick's folder
//! poll_interval_ms = 1000
//! nodes = ["dtn://town/"]              # write for town even before town has used the stick
//! announce = "all"
//! state_dir = "/var/lib/ferry/usbdir"  # record of taken bundle IDs
//! ```
//!
//! # Settings
//!
//! Unknown keys are errors; every error names its key.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `path` | required | the folder watched: a stick's mount point or a folder on it (absolute) |
//! | `poll_interval_ms` | `1000` | how often the folder is looked at (10 ms to 1 h): appearing, disappearing, new files |
//! | `nodes` | `[]` | node IDs (`dtn://town/`, `ipn:7.0`) whose mailboxes are peers even if the stick has no folder for them yet |
//! | `announce` | `"all"` | `"all"`: every mailbox on the stick is a peer; `"listed"`: only `nodes` |
//! | `state_dir` | `$XDG_DATA_HOME/ferry/usbdir` (`~/.local/share/ferry/usbdir`) | where the record of taken bundle IDs (`<this node>.taken`) is kept; must be on this node's disk, not on the stick |
//! | `max_bundle_size` | `4294967296` | larger files are reported and left, never read into memory |
//!
//! Addresses for `connect` (`ferry usb sync` makes them): `usbdir:/PATH`
//! watches another folder until it disappears; `usbdir-sync:NONCE:/PATH`
//! does that and writes progress to `<PATH>/<this node>/.ferry-sync.toml`.

pub mod durable;
pub mod inbox;
pub mod name;
pub mod plugin;
pub mod settings;
pub mod sync;
pub mod taken;

pub use plugin::{UsbDir, DESCRIPTOR};

/// The same descriptor as [`DESCRIPTOR`], as a function.
pub fn descriptor() -> &'static ferry_cla_abi::FerryClaDescriptor {
    &DESCRIPTOR
}

#[cfg(feature = "export")]
ferry_cla_abi::export_cla!(UsbDir);
