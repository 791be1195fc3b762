//! TCPCLv4 messages on the wire (RFC 9174 §4.2, §4.6, §5, §6.1), smoltcp style.
//!
//! Untrusted bytes pass one checked constructor — [`ContactHeader::parse`] or
//! [`Message::parse`] — and after it no accessor can panic. Every `Repr` type
//! has `parse`, `emit` and `buffer_len`.
//!
//! TCPCLv4 has no PDU length field: a message's length is only known once its
//! variable-length fields have been read. `parse` therefore returns
//! `Ok(None)` while the message is incomplete, and checks every declared length
//! against [`Limits`] *as soon as the length field itself is complete*, so a
//! header that declares 2^63 bytes is an error before a single byte of its body
//! has arrived, and nothing is ever allocated from a declared length.

use core::fmt;

/// The contact header magic, "dtn!" in US-ASCII (RFC 9174 §4.2).
pub const MAGIC: [u8; 4] = *b"dtn!";
/// The protocol version this crate implements (RFC 9174 §4.2).
pub const VERSION: u8 = 4;
/// The IANA-assigned TCP port for TCPCL (RFC 9174, IANA considerations).
pub const DEFAULT_PORT: u16 = 4556;
/// The transfer extension item type of the Transfer Length extension
/// (RFC 9174 §5.2.5.1).
pub const TRANSFER_LENGTH_EXTENSION: u16 = 0x0001;

/// Why bytes are not a TCPCLv4 message. Every variant means the stream can not
/// be framed any further: TCPCLv4 has no length field to skip a bad message by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The first four octets are not "dtn!" (RFC 9174 §4.3: close the connection).
    #[error("contact header magic is not \"dtn!\"")]
    BadMagic,
    /// A message type code this implementation does not know (RFC 9174 §5.1.2:
    /// MSG_REJECT "Message Type Unknown", then close).
    #[error("unknown message type {0:#04x}")]
    UnknownMessageType(u8),
    /// An XFER_SEGMENT whose data length exceeds our segment MRU.
    #[error("segment data length {len} exceeds the segment MRU {max}")]
    SegmentTooLong {
        /// The declared data length.
        len: u64,
        /// Our segment MRU.
        max: u64,
    },
    /// A session or transfer extension item list longer than we accept.
    #[error("extension items length {len} exceeds the limit {max}")]
    ExtensionsTooLong {
        /// The declared list length.
        len: u32,
        /// Our limit.
        max: u32,
    },
    /// An extension item list whose items do not exactly fill its length.
    #[error("extension item list is malformed")]
    MalformedExtensions,
    /// A SESS_INIT node ID longer than we accept.
    #[error("node ID length {len} exceeds the limit {max}")]
    NodeIdTooLong {
        /// The declared node ID length.
        len: u16,
        /// Our limit.
        max: u16,
    },
    /// A SESS_INIT node ID that is not UTF-8 (RFC 9174 §4.6).
    #[error("node ID is not valid UTF-8")]
    NodeIdNotUtf8,
}

/// Bounds that [`Message::parse`] applies to declared lengths before it waits
/// for (let alone stores) the bytes they announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Our segment MRU: the largest XFER_SEGMENT data length accepted.
    pub segment_mru: u64,
    /// The largest session or transfer extension item list accepted.
    pub max_extensions_len: u32,
    /// The largest SESS_INIT node ID accepted.
    pub max_node_id_len: u16,
}

impl Limits {
    /// The longest message these limits admit, in octets: what a receive buffer
    /// may have to hold at once.
    pub fn max_message_len(&self) -> u64 {
        let seg = XferSegment::MAX_HEADER_LEN as u64 + u64::from(self.max_extensions_len);
        let init = SessInit::FIXED_LEN as u64 + u64::from(self.max_node_id_len) + u64::from(self.max_extensions_len);
        seg.saturating_add(self.segment_mru).max(init)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits { segment_mru: 1 << 20, max_extensions_len: 64 * 1024, max_node_id_len: 1024 }
    }
}

macro_rules! flags_type {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $flag:ident = $value:expr;)* }) => {
        $(#[$meta])*
        ///
        /// The raw octet is kept as received: reserved bits are ignored on
        /// receipt but preserved, so they can be reflected where the RFC asks.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(pub u8);

        impl $name {
            /// No flag set.
            pub const EMPTY: $name = $name(0);
            $($(#[$fmeta])* pub const $flag: $name = $name($value);)*

            /// The raw octet.
            pub fn bits(self) -> u8 {
                self.0
            }

            /// Whether every bit of `other` is set.
            pub fn contains(self, other: $name) -> bool {
                self.0 & other.0 == other.0
            }
        }

        impl core::ops::BitOr for $name {
            type Output = $name;
            fn bitor(self, rhs: $name) -> $name {
                $name(self.0 | rhs.0)
            }
        }

        impl core::ops::BitOrAssign for $name {
            fn bitor_assign(&mut self, rhs: $name) {
                self.0 |= rhs.0;
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:#04x})", stringify!($name), self.0)
            }
        }
    };
}

flags_type! {
    /// Contact header flags (RFC 9174 §4.2).
    ContactFlags {
        /// The sender is capable of TLS (RFC 9174 §4.4).
        CAN_TLS = 0x01;
    }
}

flags_type! {
    /// XFER_SEGMENT and XFER_ACK message flags (RFC 9174 §5.2.2).
    SegmentFlags {
        /// The last segment of a transfer.
        END = 0x01;
        /// The first segment of a transfer.
        START = 0x02;
    }
}

impl SegmentFlags {
    /// START is set.
    pub fn is_start(self) -> bool {
        self.contains(SegmentFlags::START)
    }

    /// END is set.
    pub fn is_end(self) -> bool {
        self.contains(SegmentFlags::END)
    }
}

flags_type! {
    /// SESS_TERM message flags (RFC 9174 §6.1).
    SessTermFlags {
        /// This SESS_TERM acknowledges an earlier one.
        REPLY = 0x01;
    }
}

flags_type! {
    /// Session and transfer extension item flags (RFC 9174 §4.8, §5.2.5).
    ExtensionFlags {
        /// The receiver must understand the item or fail (§4.8: terminate the
        /// session; §5.2.5: refuse the transfer).
        CRITICAL = 0x01;
    }
}

macro_rules! reason_type {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:expr,)* }) => {
        $(#[$meta])*
        ///
        /// Codes this crate does not know are kept as `Unassigned`: reason
        /// codes are informative, and an unknown one must not break a session.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A code not assigned when this was written.
            Unassigned(u8),
        }

        impl From<u8> for $name {
            fn from(code: u8) -> $name {
                match code {
                    $($value => $name::$variant,)*
                    other => $name::Unassigned(other),
                }
            }
        }

        impl From<$name> for u8 {
            fn from(reason: $name) -> u8 {
                match reason {
                    $($name::$variant => $value,)*
                    $name::Unassigned(other) => other,
                }
            }
        }
    };
}

reason_type! {
    /// XFER_REFUSE reason codes (RFC 9174 §5.2.4).
    RefuseReason {
        /// Reason not given.
        Unknown = 0x00,
        /// The receiver already has the complete bundle; the sender MAY
        /// consider it received.
        Completed = 0x01,
        /// The receiver's resources are exhausted.
        NoResources = 0x02,
        /// The receiver needs the bundle retransmitted in its entirety.
        Retransmit = 0x03,
        /// The bundle or its transfer extensions are not acceptable.
        NotAcceptable = 0x04,
        /// A transfer extension item could not be processed.
        ExtensionFailure = 0x05,
        /// The receiving session is Ending (RFC 9174 §6.1).
        SessionTerminating = 0x06,
    }
}

reason_type! {
    /// SESS_TERM reason codes (RFC 9174 §6.1).
    SessTermReason {
        /// Reason not given.
        Unknown = 0x00,
        /// Idle timeout (RFC 9174 §5.1.1).
        IdleTimeout = 0x01,
        /// The entity cannot conform to the protocol version (§4.3).
        VersionMismatch = 0x02,
        /// The entity is too busy.
        Busy = 0x03,
        /// A contact header or SESS_INIT option could not be interpreted or
        /// negotiated (§4.3, §4.7, §4.8).
        ContactFailure = 0x04,
        /// The entity ran into a resource limit.
        ResourceExhaustion = 0x05,
    }
}

reason_type! {
    /// MSG_REJECT reason codes (RFC 9174 §5.1.2).
    RejectReason {
        /// The message type is unknown.
        TypeUnknown = 0x01,
        /// The message is known but unsupported with the negotiated parameters.
        Unsupported = 0x02,
        /// The message is unexpected in the session's state.
        Unexpected = 0x03,
    }
}

/// Message type codes (RFC 9174 §4.5).
pub mod message_type {
    /// XFER_SEGMENT.
    pub const XFER_SEGMENT: u8 = 0x01;
    /// XFER_ACK.
    pub const XFER_ACK: u8 = 0x02;
    /// XFER_REFUSE.
    pub const XFER_REFUSE: u8 = 0x03;
    /// KEEPALIVE.
    pub const KEEPALIVE: u8 = 0x04;
    /// SESS_TERM.
    pub const SESS_TERM: u8 = 0x05;
    /// MSG_REJECT.
    pub const MSG_REJECT: u8 = 0x06;
    /// SESS_INIT.
    pub const SESS_INIT: u8 = 0x07;
}

/// A bounds-checked big-endian reader. `None` means "not enough bytes yet".
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Some(out)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.array()?))
    }
}

/// Evaluate to the value or return `Ok(None)`: the message is incomplete.
macro_rules! need {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return Ok(None),
        }
    };
}

/// The contact header (RFC 9174 §4.2): magic, version, flags.
///
/// `parse` checks the magic only; the version is the session's business
/// (§4.3 says what to do on a mismatch, which needs the parsed header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactHeader {
    /// The TCPCL version; 4 for this protocol.
    pub version: u8,
    /// Contact header flags.
    pub flags: ContactFlags,
}

impl ContactHeader {
    /// The encoded length: magic (4), version (1), flags (1).
    pub const LEN: usize = 6;

    /// A version 4 contact header.
    pub fn new(flags: ContactFlags) -> Self {
        ContactHeader { version: VERSION, flags }
    }

    /// Parse a contact header from the start of `buf`.
    ///
    /// A wrong magic is an error as soon as the first differing octet is
    /// present, so a peer speaking another protocol is dropped at once.
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, WireError> {
        let prefix = buf.len().min(MAGIC.len());
        if buf[..prefix] != MAGIC[..prefix] {
            return Err(WireError::BadMagic);
        }
        if buf.len() < Self::LEN {
            return Ok(None);
        }
        Ok(Some((ContactHeader { version: buf[4], flags: ContactFlags(buf[5]) }, Self::LEN)))
    }

    /// Append the encoding to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(self.version);
        out.push(self.flags.0);
    }

    /// The encoded length.
    pub fn buffer_len(&self) -> usize {
        Self::LEN
    }
}

/// One session or transfer extension item (RFC 9174 §4.8, §5.2.5):
/// flags (u8), item type (u16), item length (u16), value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionItem<'a> {
    /// Item flags.
    pub flags: ExtensionFlags,
    /// Item type.
    pub item_type: u16,
    /// Item value; at most `u16::MAX` octets are emitted.
    pub value: &'a [u8],
}

impl<'a> ExtensionItem<'a> {
    /// Flags (1), type (2), length (2).
    pub const HEADER_LEN: usize = 5;

    /// Whether the CRITICAL flag is set.
    pub fn is_critical(&self) -> bool {
        self.flags.contains(ExtensionFlags::CRITICAL)
    }

    /// The total length of the transfer if this is a well-formed Transfer
    /// Length extension (RFC 9174 §5.2.5.1: type 0x0001, a u64 value).
    pub fn transfer_length(&self) -> Option<u64> {
        if self.item_type != TRANSFER_LENGTH_EXTENSION {
            return None;
        }
        Some(u64::from_be_bytes(self.value.try_into().ok()?))
    }

    /// The encoded length.
    pub fn buffer_len(&self) -> usize {
        Self::HEADER_LEN + self.value.len().min(usize::from(u16::MAX))
    }

    /// Append the encoding to `out`. A value longer than `u16::MAX` is cut
    /// there, so the length field always matches what is written.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let len = u16::try_from(self.value.len()).unwrap_or(u16::MAX);
        out.push(self.flags.0);
        out.extend_from_slice(&self.item_type.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.value[..usize::from(len)]);
    }
}

/// A checked extension item list: its items exactly fill it.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtensionItems<'a> {
    bytes: &'a [u8],
}

impl<'a> ExtensionItems<'a> {
    /// The empty list.
    pub const EMPTY: ExtensionItems<'static> = ExtensionItems { bytes: &[] };

    /// Check that `bytes` is a sequence of whole extension items.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, WireError> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let Some(header) = rest.get(..ExtensionItem::HEADER_LEN) else {
                return Err(WireError::MalformedExtensions);
            };
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            let Some(next) = rest.get(ExtensionItem::HEADER_LEN + len..) else {
                return Err(WireError::MalformedExtensions);
            };
            rest = next;
        }
        Ok(ExtensionItems { bytes })
    }

    /// Encode `items` into `out`, ready for [`ExtensionItems::new_checked`].
    pub fn encode(items: &[ExtensionItem<'_>], out: &mut Vec<u8>) {
        for item in items {
            item.emit(out);
        }
    }

    /// The encoded list.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The items, in order.
    pub fn iter(&self) -> ExtensionIter<'a> {
        ExtensionIter { rest: self.bytes }
    }

    /// The list's length as its u32 length field; `None` if it does not fit
    /// (only possible for a list built locally).
    fn wire_len(&self) -> Option<u32> {
        u32::try_from(self.bytes.len()).ok()
    }
}

impl fmt::Debug for ExtensionItems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for ExtensionItems<'a> {
    type Item = ExtensionItem<'a>;
    type IntoIter = ExtensionIter<'a>;
    fn into_iter(self) -> ExtensionIter<'a> {
        self.iter()
    }
}

/// Iterator over a checked [`ExtensionItems`] list.
#[derive(Debug, Clone)]
pub struct ExtensionIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ExtensionIter<'a> {
    type Item = ExtensionItem<'a>;

    fn next(&mut self) -> Option<ExtensionItem<'a>> {
        // The list was checked by `new_checked`; `get` keeps this panic-free
        // regardless.
        let header = self.rest.get(..ExtensionItem::HEADER_LEN)?;
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let value = self.rest.get(ExtensionItem::HEADER_LEN..ExtensionItem::HEADER_LEN + len)?;
        let item = ExtensionItem {
            flags: ExtensionFlags(header[0]),
            item_type: u16::from_be_bytes([header[1], header[2]]),
            value,
        };
        self.rest = &self.rest[ExtensionItem::HEADER_LEN + len..];
        Some(item)
    }
}

/// Read a u32 extension list length, bound it, and take the list.
fn read_extensions<'a>(r: &mut Reader<'a>, limits: &Limits) -> Result<Option<ExtensionItems<'a>>, WireError> {
    let len = need!(r.u32());
    if len > limits.max_extensions_len {
        return Err(WireError::ExtensionsTooLong { len, max: limits.max_extensions_len });
    }
    // A u32 fits usize on every target this crate builds for; if not, the
    // list cannot be held, which is what ExtensionsTooLong says.
    let n = usize::try_from(len).map_err(|_| WireError::ExtensionsTooLong { len, max: limits.max_extensions_len })?;
    let bytes = need!(r.take(n));
    Ok(Some(ExtensionItems::new_checked(bytes)?))
}

fn emit_extensions(items: &ExtensionItems<'_>, out: &mut Vec<u8>) {
    match items.wire_len() {
        Some(len) => {
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(items.bytes);
        }
        // Only a locally built list of 4 GiB could get here; send none rather
        // than a length that lies.
        None => out.extend_from_slice(&0u32.to_be_bytes()),
    }
}

fn extensions_len(items: &ExtensionItems<'_>) -> usize {
    4 + if items.wire_len().is_some() { items.bytes.len() } else { 0 }
}

/// SESS_INIT (RFC 9174 §4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessInit<'a> {
    /// Keepalive interval in seconds; 0 disables keepalives.
    pub keepalive: u16,
    /// The largest segment data the sender accepts.
    pub segment_mru: u64,
    /// The largest transfer the sender accepts.
    pub transfer_mru: u64,
    /// The sender's node ID; empty means "not disclosed" (§4.6).
    pub node_id: &'a str,
    /// Session extension items.
    pub extensions: ExtensionItems<'a>,
}

impl<'a> SessInit<'a> {
    /// Type (1), keepalive (2), segment MRU (8), transfer MRU (8), node ID
    /// length (2), extension length (4).
    pub const FIXED_LEN: usize = 25;

    fn parse_body(r: &mut Reader<'a>, limits: &Limits) -> Result<Option<Self>, WireError> {
        let keepalive = need!(r.u16());
        let segment_mru = need!(r.u64());
        let transfer_mru = need!(r.u64());
        let node_id_len = need!(r.u16());
        if node_id_len > limits.max_node_id_len {
            return Err(WireError::NodeIdTooLong { len: node_id_len, max: limits.max_node_id_len });
        }
        let node_id = need!(r.take(usize::from(node_id_len)));
        let node_id = core::str::from_utf8(node_id).map_err(|_| WireError::NodeIdNotUtf8)?;
        let extensions = need!(read_extensions(r, limits)?);
        Ok(Some(SessInit { keepalive, segment_mru, transfer_mru, node_id, extensions }))
    }

    fn emit_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.keepalive.to_be_bytes());
        out.extend_from_slice(&self.segment_mru.to_be_bytes());
        out.extend_from_slice(&self.transfer_mru.to_be_bytes());
        // A node ID longer than u16::MAX is cut there (at a char boundary is
        // not needed: Config validation keeps ours short).
        let id = self.node_id.as_bytes();
        let len = u16::try_from(id.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&id[..usize::from(len)]);
        emit_extensions(&self.extensions, out);
    }

    fn body_len(&self) -> usize {
        2 + 8 + 8 + 2 + self.node_id.len().min(usize::from(u16::MAX)) + extensions_len(&self.extensions)
    }
}

/// XFER_SEGMENT (RFC 9174 §5.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XferSegment<'a> {
    /// START / END.
    pub flags: SegmentFlags,
    /// The transfer ID.
    pub transfer_id: u64,
    /// Transfer extension items; on the wire only when START is set.
    pub extensions: ExtensionItems<'a>,
    /// The segment's data.
    pub data: &'a [u8],
}

impl<'a> XferSegment<'a> {
    /// The longest header: type (1), flags (1), transfer ID (8), extension
    /// length (4), data length (8).
    pub const MAX_HEADER_LEN: usize = 22;

    fn parse_body(r: &mut Reader<'a>, limits: &Limits) -> Result<Option<Self>, WireError> {
        let flags = SegmentFlags(need!(r.u8()));
        let transfer_id = need!(r.u64());
        let extensions = if flags.is_start() { need!(read_extensions(r, limits)?) } else { ExtensionItems::default() };
        let len = need!(r.u64());
        // Checked before waiting for the data: a 2^63 declaration fails here.
        if len > limits.segment_mru {
            return Err(WireError::SegmentTooLong { len, max: limits.segment_mru });
        }
        let n = usize::try_from(len).map_err(|_| WireError::SegmentTooLong { len, max: limits.segment_mru })?;
        let data = need!(r.take(n));
        Ok(Some(XferSegment { flags, transfer_id, extensions, data }))
    }

    /// Append everything but the data: the header of a segment whose data
    /// (of `data_len` octets) the caller appends next. This lets a sender
    /// copy a bundle slice straight into its output buffer.
    pub fn emit_header(
        flags: SegmentFlags,
        transfer_id: u64,
        extensions: &ExtensionItems<'_>,
        data_len: u64,
        out: &mut Vec<u8>,
    ) {
        out.push(message_type::XFER_SEGMENT);
        out.push(flags.0);
        out.extend_from_slice(&transfer_id.to_be_bytes());
        if flags.is_start() {
            emit_extensions(extensions, out);
        }
        out.extend_from_slice(&data_len.to_be_bytes());
    }

    fn header_len(&self) -> usize {
        1 + 1 + 8 + if self.flags.is_start() { extensions_len(&self.extensions) } else { 0 } + 8
    }
}

/// XFER_ACK (RFC 9174 §5.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XferAck {
    /// The acknowledged segment's flags, reflected (§5.2.3).
    pub flags: SegmentFlags,
    /// The transfer ID.
    pub transfer_id: u64,
    /// Total octets of the transfer received so far.
    pub acknowledged_len: u64,
}

/// XFER_REFUSE (RFC 9174 §5.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XferRefuse {
    /// Why.
    pub reason: RefuseReason,
    /// The refused transfer.
    pub transfer_id: u64,
}

/// SESS_TERM (RFC 9174 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessTerm {
    /// REPLY.
    pub flags: SessTermFlags,
    /// Why.
    pub reason: SessTermReason,
}

impl SessTerm {
    /// Whether this acknowledges an earlier SESS_TERM.
    pub fn is_reply(&self) -> bool {
        self.flags.contains(SessTermFlags::REPLY)
    }
}

/// MSG_REJECT (RFC 9174 §5.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgReject {
    /// Why.
    pub reason: RejectReason,
    /// The message type octet of the rejected message.
    pub rejected_header: u8,
}

/// Any TCPCLv4 message after the contact header. Borrows from the parsed
/// buffer: segment data is not copied by parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// SESS_INIT.
    SessInit(SessInit<'a>),
    /// XFER_SEGMENT.
    XferSegment(XferSegment<'a>),
    /// XFER_ACK.
    XferAck(XferAck),
    /// XFER_REFUSE.
    XferRefuse(XferRefuse),
    /// KEEPALIVE (RFC 9174 §5.1.1): the header alone.
    Keepalive,
    /// SESS_TERM.
    SessTerm(SessTerm),
    /// MSG_REJECT.
    MsgReject(MsgReject),
}

impl<'a> Message<'a> {
    /// Parse one message from the start of `buf`.
    ///
    /// `Ok(None)`: `buf` holds only part of a message; call again with more.
    /// `Ok(Some((msg, n)))`: the message took the first `n` octets.
    /// `Err(_)`: the stream is not TCPCLv4 within `limits`; it can not be
    /// resynchronised.
    pub fn parse(buf: &'a [u8], limits: &Limits) -> Result<Option<(Self, usize)>, WireError> {
        let mut r = Reader::new(buf);
        let msg = match need!(r.u8()) {
            message_type::SESS_INIT => Message::SessInit(need!(SessInit::parse_body(&mut r, limits)?)),
            message_type::XFER_SEGMENT => Message::XferSegment(need!(XferSegment::parse_body(&mut r, limits)?)),
            message_type::XFER_ACK => Message::XferAck(XferAck {
                flags: SegmentFlags(need!(r.u8())),
                transfer_id: need!(r.u64()),
                acknowledged_len: need!(r.u64()),
            }),
            message_type::XFER_REFUSE => {
                Message::XferRefuse(XferRefuse { reason: need!(r.u8()).into(), transfer_id: need!(r.u64()) })
            }
            message_type::KEEPALIVE => Message::Keepalive,
            message_type::SESS_TERM => {
                Message::SessTerm(SessTerm { flags: SessTermFlags(need!(r.u8())), reason: need!(r.u8()).into() })
            }
            message_type::MSG_REJECT => {
                Message::MsgReject(MsgReject { reason: need!(r.u8()).into(), rejected_header: need!(r.u8()) })
            }
            other => return Err(WireError::UnknownMessageType(other)),
        };
        Ok(Some((msg, r.pos)))
    }

    /// The message type code.
    pub fn message_type(&self) -> u8 {
        match self {
            Message::SessInit(_) => message_type::SESS_INIT,
            Message::XferSegment(_) => message_type::XFER_SEGMENT,
            Message::XferAck(_) => message_type::XFER_ACK,
            Message::XferRefuse(_) => message_type::XFER_REFUSE,
            Message::Keepalive => message_type::KEEPALIVE,
            Message::SessTerm(_) => message_type::SESS_TERM,
            Message::MsgReject(_) => message_type::MSG_REJECT,
        }
    }

    /// Append the encoding to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Message::XferSegment(seg) => {
                // `data.len()` is a local length; usize -> u64 never truncates.
                XferSegment::emit_header(seg.flags, seg.transfer_id, &seg.extensions, seg.data.len() as u64, out);
                out.extend_from_slice(seg.data);
                return;
            }
            _ => out.push(self.message_type()),
        }
        match self {
            Message::SessInit(init) => init.emit_body(out),
            Message::XferAck(ack) => {
                out.push(ack.flags.0);
                out.extend_from_slice(&ack.transfer_id.to_be_bytes());
                out.extend_from_slice(&ack.acknowledged_len.to_be_bytes());
            }
            Message::XferRefuse(refuse) => {
                out.push(refuse.reason.into());
                out.extend_from_slice(&refuse.transfer_id.to_be_bytes());
            }
            Message::SessTerm(term) => {
                out.push(term.flags.0);
                out.push(term.reason.into());
            }
            Message::MsgReject(reject) => {
                out.push(reject.reason.into());
                out.push(reject.rejected_header);
            }
            Message::Keepalive | Message::XferSegment(_) => {}
        }
    }

    /// The encoded length.
    pub fn buffer_len(&self) -> usize {
        match self {
            Message::SessInit(init) => 1 + init.body_len(),
            Message::XferSegment(seg) => seg.header_len() + seg.data.len(),
            Message::XferAck(_) => 1 + 1 + 8 + 8,
            Message::XferRefuse(_) => 1 + 1 + 8,
            Message::Keepalive => 1,
            Message::SessTerm(_) | Message::MsgReject(_) => 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(msg: Message<'_>) {
        let mut out = Vec::new();
        msg.emit(&mut out);
        assert_eq!(out.len(), msg.buffer_len(), "{msg:?}");
        let limits = Limits::default();
        let (parsed, n) = Message::parse(&out, &limits).unwrap().unwrap();
        assert_eq!(n, out.len());
        assert_eq!(parsed, msg);
        // Every strict prefix is incomplete, never an error.
        for cut in 0..out.len() {
            assert_eq!(Message::parse(&out[..cut], &limits), Ok(None), "{msg:?} cut at {cut}");
        }
    }

    #[test]
    fn messages_round_trip() {
        let mut ext = Vec::new();
        ExtensionItems::encode(
            &[
                ExtensionItem { flags: ExtensionFlags::EMPTY, item_type: 0x1234, value: b"abc" },
                ExtensionItem { flags: ExtensionFlags::CRITICAL, item_type: 7, value: b"" },
            ],
            &mut ext,
        );
        let ext = ExtensionItems::new_checked(&ext).unwrap();
        round_trip(Message::SessInit(SessInit {
            keepalive: 30,
            segment_mru: 1000,
            transfer_mru: 1 << 40,
            node_id: "dtn://node-a/",
            extensions: ext,
        }));
        round_trip(Message::XferSegment(XferSegment {
            flags: SegmentFlags::START,
            transfer_id: 9,
            extensions: ext,
            data: b"hello",
        }));
        round_trip(Message::XferSegment(XferSegment {
            flags: SegmentFlags::END,
            transfer_id: 9,
            extensions: ExtensionItems::EMPTY,
            data: b"",
        }));
        round_trip(Message::XferAck(XferAck { flags: SegmentFlags(0x83), transfer_id: u64::MAX, acknowledged_len: 5 }));
        round_trip(Message::XferRefuse(XferRefuse { reason: RefuseReason::Unassigned(0x77), transfer_id: 1 }));
        round_trip(Message::Keepalive);
        round_trip(Message::SessTerm(SessTerm { flags: SessTermFlags::REPLY, reason: SessTermReason::Busy }));
        round_trip(Message::MsgReject(MsgReject { reason: RejectReason::Unexpected, rejected_header: 0x07 }));
    }

    #[test]
    fn reason_codes_round_trip() {
        for code in 0..=u8::MAX {
            assert_eq!(u8::from(RefuseReason::from(code)), code);
            assert_eq!(u8::from(SessTermReason::from(code)), code);
            assert_eq!(u8::from(RejectReason::from(code)), code);
        }
        assert_eq!(RefuseReason::from(6), RefuseReason::SessionTerminating);
        assert_eq!(SessTermReason::from(4), SessTermReason::ContactFailure);
        assert_eq!(RejectReason::from(0), RejectReason::Unassigned(0));
    }

    #[test]
    fn contact_header() {
        let mut out = Vec::new();
        ContactHeader::new(ContactFlags::CAN_TLS).emit(&mut out);
        assert_eq!(out, [0x64, 0x74, 0x6e, 0x21, 0x04, 0x01]);
        assert_eq!(ContactHeader::parse(&out[..3]), Ok(None));
        let (ch, n) = ContactHeader::parse(&out).unwrap().unwrap();
        assert_eq!((ch.version, ch.flags, n), (4, ContactFlags::CAN_TLS, 6));
        assert_eq!(ContactHeader::parse(b"dx"), Err(WireError::BadMagic));
        assert_eq!(ContactHeader::parse(b"GET / HTTP/1.1"), Err(WireError::BadMagic));
    }

    #[test]
    fn declared_lengths_are_bounded_before_the_body_arrives() {
        let limits = Limits { segment_mru: 1000, max_extensions_len: 100, max_node_id_len: 64 };
        // XFER_SEGMENT, no START, data length 2^63: no data follows.
        let mut seg = vec![message_type::XFER_SEGMENT, 0x01];
        seg.extend_from_slice(&1u64.to_be_bytes());
        seg.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(Message::parse(&seg, &limits), Err(WireError::SegmentTooLong { len: 1 << 63, max: 1000 }));
        // START with a 4 GiB extension list.
        let mut seg = vec![message_type::XFER_SEGMENT, 0x02];
        seg.extend_from_slice(&1u64.to_be_bytes());
        seg.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(Message::parse(&seg, &limits), Err(WireError::ExtensionsTooLong { len: u32::MAX, max: 100 }));
        // SESS_INIT with a 65535-octet node ID.
        let mut init = vec![message_type::SESS_INIT, 0, 0];
        init.extend_from_slice(&[0; 16]);
        init.extend_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(Message::parse(&init, &limits), Err(WireError::NodeIdTooLong { len: u16::MAX, max: 64 }));
        // Unknown type.
        assert_eq!(Message::parse(&[0x08], &limits), Err(WireError::UnknownMessageType(0x08)));
        assert_eq!(Message::parse(&[0x00], &limits), Err(WireError::UnknownMessageType(0x00)));
    }

    #[test]
    fn malformed_extension_lists() {
        assert_eq!(ExtensionItems::new_checked(&[0, 0, 1, 0]), Err(WireError::MalformedExtensions));
        assert_eq!(ExtensionItems::new_checked(&[0, 0, 1, 0, 2, 0xaa]), Err(WireError::MalformedExtensions));
        let ok = ExtensionItems::new_checked(&[1, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap();
        let item = ok.iter().next().unwrap();
        assert!(item.is_critical());
        assert_eq!(item.transfer_length(), Some(256));
        assert_eq!(ok.iter().count(), 1);
    }

    #[test]
    fn max_message_len() {
        let limits = Limits { segment_mru: 1000, max_extensions_len: 100, max_node_id_len: 64 };
        assert_eq!(limits.max_message_len(), 22 + 100 + 1000);
    }
}
