//! Lotus's JSON shapes for the methods this crate uses, field for field as Lotus's
//! `documentation/en/api-methods-v1-stable.md` shows them (`PascalCase` names, addresses as
//! strings, CIDs as `{"/": "…"}`, amounts as decimal attoFIL strings, bytes as base64, an
//! absent Go pointer or nil slice as `null`).

use cid::Cid;
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use serde::{Deserialize, Serialize};

use crate::amount::atto_string;

/// A chain epoch (block height), as Lotus numbers them.
pub type ChainEpoch = i64;

/// `Filecoin.Version`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Version {
    /// The node's version string (`"1.33.0+mainnet+git.…"`).
    pub version: String,
    /// The API version, `major << 16 | minor << 8 | patch` (`131840` is 2.3.0).
    #[serde(rename = "APIVersion")]
    pub api_version: u32,
    /// Seconds between epochs (30 on mainnet).
    pub block_delay: u64,
    /// The node's agent string (newer Lotus only).
    #[serde(default)]
    pub agent: String,
}

/// A signature as Lotus writes it: `{"Type": 1|2, "Data": base64}` (1 secp256k1, 2 BLS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Signature {
    /// 1 = secp256k1, 2 = BLS (3 = delegated).
    #[serde(rename = "Type")]
    pub sig_type: u8,
    /// The signature bytes.
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

/// One block header of a tipset. Proof fields are kept as raw JSON: Shoal reads only the
/// height, miner, time and base fee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BlockHeader {
    /// The miner that produced the block.
    #[serde(with = "address_string")]
    pub miner: Address,
    /// The election ticket (raw JSON).
    #[serde(default)]
    pub ticket: serde_json::Value,
    /// The election proof (raw JSON).
    #[serde(default)]
    pub election_proof: serde_json::Value,
    /// Drand entries (raw JSON).
    #[serde(default)]
    pub beacon_entries: serde_json::Value,
    /// Winning PoSt proofs (raw JSON).
    #[serde(default, rename = "WinPoStProof")]
    pub win_post_proof: serde_json::Value,
    /// The parent tipset's block CIDs.
    #[serde(with = "cid_list")]
    pub parents: Vec<Cid>,
    /// The parent's weight (a decimal big integer).
    pub parent_weight: String,
    /// The block's epoch.
    pub height: ChainEpoch,
    /// The parent state root.
    #[serde(with = "cid_json")]
    pub parent_state_root: Cid,
    /// The parent message receipts root.
    #[serde(with = "cid_json")]
    pub parent_message_receipts: Cid,
    /// The block's messages root.
    #[serde(with = "cid_json")]
    pub messages: Cid,
    /// Aggregate BLS signature of the messages.
    #[serde(rename = "BLSAggregate")]
    pub bls_aggregate: Option<Signature>,
    /// Unix seconds.
    pub timestamp: u64,
    /// The miner's signature of the block.
    pub block_sig: Option<Signature>,
    /// Fork signalling bits.
    pub fork_signaling: u64,
    /// The parent's base fee, attoFIL.
    #[serde(with = "atto_string")]
    pub parent_base_fee: TokenAmount,
}

/// `Filecoin.ChainHead`'s answer: a tipset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TipSet {
    /// The tipset key: its blocks' CIDs.
    #[serde(with = "cid_list")]
    pub cids: Vec<Cid>,
    /// Its blocks.
    pub blocks: Vec<BlockHeader>,
    /// Its epoch.
    pub height: ChainEpoch,
}

/// A storage deal's proposal (`MarketDeal.Proposal`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DealProposal {
    /// The piece's commitment CID.
    #[serde(rename = "PieceCID", with = "cid_json")]
    pub piece_cid: Cid,
    /// Padded piece size in bytes.
    pub piece_size: u64,
    /// Whether it is a Filecoin Plus deal.
    pub verified_deal: bool,
    /// The client.
    #[serde(with = "address_string")]
    pub client: Address,
    /// The storage provider.
    #[serde(with = "address_string")]
    pub provider: Address,
    /// The client's label (often the payload CID).
    #[serde(default)]
    pub label: String,
    /// First epoch of the deal.
    pub start_epoch: ChainEpoch,
    /// Last epoch of the deal.
    pub end_epoch: ChainEpoch,
    /// Price per epoch, attoFIL.
    #[serde(with = "atto_string")]
    pub storage_price_per_epoch: TokenAmount,
    /// Provider collateral, attoFIL.
    #[serde(with = "atto_string")]
    pub provider_collateral: TokenAmount,
    /// Client collateral, attoFIL.
    #[serde(with = "atto_string")]
    pub client_collateral: TokenAmount,
}

/// A storage deal's on-chain state (`MarketDeal.State`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DealState {
    /// The sector holding the deal (newer Lotus; 0 when absent).
    #[serde(default)]
    pub sector_number: u64,
    /// Epoch the sector started (-1 before).
    pub sector_start_epoch: ChainEpoch,
    /// Epoch of the last update.
    pub last_updated_epoch: ChainEpoch,
    /// Epoch it was slashed (-1 if not).
    pub slash_epoch: ChainEpoch,
}

/// `Filecoin.StateMarketStorageDeal`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MarketDeal {
    /// What was agreed.
    pub proposal: DealProposal,
    /// Where it stands.
    pub state: DealState,
}

/// `PaychGetOpts`, `Filecoin.PaychGet`'s fourth parameter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PaychGetOpts {
    /// Refuse anything that would need an on-chain message.
    pub off_chain: bool,
}

/// `ChannelInfo`, what `Filecoin.PaychGet` answers.
///
/// `channel` is `None` while the channel is still being created (Lotus sends `"<empty>"`,
/// Go's undefined address): wait on `wait_sentinel` with `PaychGetWaitReady` to learn it.
/// `wait_sentinel` is `None` (`null`) when no message was needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChannelInfo {
    /// The channel's address, once known.
    #[serde(with = "opt_address_string")]
    pub channel: Option<Address>,
    /// The message to wait for before the channel (or its new funds) can be used.
    #[serde(with = "opt_cid_json")]
    pub wait_sentinel: Option<Cid>,
}

/// `ChannelAvailableFunds`, what `Filecoin.PaychAvailableFunds` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChannelAvailableFunds {
    /// The channel, if created.
    #[serde(with = "opt_address_string")]
    pub channel: Option<Address>,
    /// The paying side.
    #[serde(with = "address_string")]
    pub from: Address,
    /// The paid side.
    #[serde(with = "address_string")]
    pub to: Address,
    /// Funds confirmed on chain.
    #[serde(with = "atto_string")]
    pub confirmed_amt: TokenAmount,
    /// Funds in messages not yet confirmed.
    #[serde(with = "atto_string")]
    pub pending_amt: TokenAmount,
    /// Confirmed funds not reserved by a `PaychGet`.
    #[serde(with = "atto_string")]
    pub non_reserved_amt: TokenAmount,
    /// Pending funds not reserved.
    #[serde(with = "atto_string")]
    pub pending_available_amt: TokenAmount,
    /// The message pending funds wait on.
    #[serde(with = "opt_cid_json")]
    pub pending_wait_sentinel: Option<Cid>,
    /// Funds queued for a later message.
    #[serde(with = "atto_string")]
    pub queued_amt: TokenAmount,
    /// Sum of the vouchers redeemed so far (Lotus spells the field `VoucherReedeemedAmt`).
    #[serde(rename = "VoucherReedeemedAmt", with = "atto_string")]
    pub voucher_redeemed_amt: TokenAmount,
}

/// `ModVerifyParams`: a voucher's condition on another actor's method (Shoal never sets one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModVerifyParams {
    /// The actor to call.
    #[serde(with = "address_string")]
    pub actor: Address,
    /// Its method number.
    pub method: u64,
    /// The parameters.
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

/// A lane merge in a voucher (Lotus does not support them yet; kept for the shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Merge {
    /// The merged lane.
    pub lane: u64,
    /// Its nonce.
    pub nonce: u64,
}

/// `paych.SignedVoucher`: the payer's promise that the channel's recipient may redeem
/// `amount` on `lane`, superseding every voucher of that lane with a lower nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SignedVoucher {
    /// The payment channel.
    #[serde(with = "address_string")]
    pub channel_addr: Address,
    /// Earliest epoch it may be redeemed (0: none).
    pub time_lock_min: ChainEpoch,
    /// Latest epoch it may be redeemed (0: none).
    pub time_lock_max: ChainEpoch,
    /// Hash of a secret the redeemer must reveal (empty: none).
    #[serde(with = "opt_base64_bytes")]
    pub secret_hash: Vec<u8>,
    /// A condition on another actor (none for Shoal).
    pub extra: Option<ModVerifyParams>,
    /// The lane.
    pub lane: u64,
    /// Its nonce within the lane, strictly increasing.
    pub nonce: u64,
    /// The total redeemable on this lane, attoFIL (cumulative, not a delta).
    #[serde(with = "atto_string")]
    pub amount: TokenAmount,
    /// Earliest epoch the channel may settle after redeeming it.
    pub min_settle_height: ChainEpoch,
    /// Lane merges.
    #[serde(with = "opt_vec")]
    pub merges: Vec<Merge>,
    /// The payer's signature.
    pub signature: Option<Signature>,
}

/// `VoucherCreateResult`, what `Filecoin.PaychVoucherCreate` answers: the voucher, or — when
/// the channel lacks funds — no voucher and the shortfall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VoucherCreateResult {
    /// The signed voucher, unless funds fell short.
    pub voucher: Option<SignedVoucher>,
    /// How much the channel lacks to cover the voucher (0 when it was created).
    #[serde(with = "atto_string")]
    pub shortfall: TokenAmount,
}

/// `PaychStatus`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PaychStatus {
    /// This node's side of the channel.
    #[serde(with = "address_string")]
    pub control_addr: Address,
    /// 1 inbound (we are paid), 2 outbound (we pay).
    pub direction: u8,
}

/// Parses a Filecoin address in either network's text form (`f…` mainnet, `t…` testnet), as
/// Lotus accepts both.
pub fn parse_address(s: &str) -> Result<Address, fvm_shared::address::Error> {
    use fvm_shared::address::Network;
    Network::Mainnet.parse_address(s).or_else(|_| Network::Testnet.parse_address(s))
}

/// Go's undefined address as Lotus writes it in JSON.
pub const UNDEF_ADDRESS: &str = "<empty>";

/// Serde for an [`Address`] as its string form (`"f01234"`), not `fvm_shared`'s bytes.
pub mod address_string {
    use fvm_shared::address::Address;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `addr.to_string()`.
    pub fn serialize<S: Serializer>(addr: &Address, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&addr.to_string())
    }

    /// Reads an `f…` or `t…` address.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Address, D::Error> {
        let s = String::deserialize(deserializer)?;
        super::parse_address(&s).map_err(|e| serde::de::Error::custom(format!("invalid address {s:?}: {e}")))
    }
}

/// Serde for an optional address: `None` is Lotus's `"<empty>"` (or `null`).
pub mod opt_address_string {
    use fvm_shared::address::Address;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the address, or `"<empty>"`.
    pub fn serialize<S: Serializer>(addr: &Option<Address>, serializer: S) -> Result<S::Ok, S::Error> {
        match addr {
            Some(addr) => serializer.serialize_str(&addr.to_string()),
            None => serializer.serialize_str(super::UNDEF_ADDRESS),
        }
    }

    /// Reads an address, `"<empty>"` or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Address>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            None => Ok(None),
            Some(s) if s == super::UNDEF_ADDRESS || s.is_empty() => Ok(None),
            Some(s) => super::parse_address(&s)
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format!("invalid address {s:?}: {e}"))),
        }
    }
}

/// Serde for a [`Cid`] as IPLD's JSON link, `{"/": "bafy…"}`.
pub mod cid_json {
    use cid::Cid;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Link {
        #[serde(rename = "/")]
        slash: String,
    }

    /// Writes `{"/": "<cid>"}`.
    pub fn serialize<S: Serializer>(cid: &Cid, serializer: S) -> Result<S::Ok, S::Error> {
        Link { slash: cid.to_string() }.serialize(serializer)
    }

    /// Reads `{"/": "<cid>"}`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Cid, D::Error> {
        let link = Link::deserialize(deserializer)?;
        link.slash.parse().map_err(|e| serde::de::Error::custom(format!("invalid CID {:?}: {e}", link.slash)))
    }
}

/// Serde for an optional [`Cid`]: `None` is `null` (Go's undefined CID).
pub mod opt_cid_json {
    use cid::Cid;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Wrap(#[serde(with = "super::cid_json")] Cid);

    /// Writes `{"/": …}` or `null`.
    pub fn serialize<S: Serializer>(cid: &Option<Cid>, serializer: S) -> Result<S::Ok, S::Error> {
        cid.map(Wrap).serialize(serializer)
    }

    /// Reads `{"/": …}` or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Cid>, D::Error> {
        Ok(Option::<Wrap>::deserialize(deserializer)?.map(|w| w.0))
    }
}

/// Serde for a list of CIDs (a tipset key); `null` reads as empty.
pub mod cid_list {
    use cid::Cid;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Wrap(#[serde(with = "super::cid_json")] Cid);

    /// Writes `[{"/": …}, …]`.
    pub fn serialize<S: Serializer>(cids: &[Cid], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(cids.iter().map(|c| Wrap(*c)))
    }

    /// Reads `[{"/": …}, …]` or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Cid>, D::Error> {
        Ok(Option::<Vec<Wrap>>::deserialize(deserializer)?.unwrap_or_default().into_iter().map(|w| w.0).collect())
    }
}

/// Serde for bytes as standard base64 (Go's `[]byte`).
pub mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes base64.
    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    /// Reads base64 (`null` as empty).
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            None => Ok(Vec::new()),
            Some(s) => base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}"))),
        }
    }
}

/// Serde for bytes that Go writes as `null` when empty (a nil `[]byte`).
pub mod opt_base64_bytes {
    use serde::{Deserializer, Serializer};

    /// Writes `null` when empty, base64 otherwise.
    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if bytes.is_empty() {
            serializer.serialize_none()
        } else {
            super::base64_bytes::serialize(bytes, serializer)
        }
    }

    /// Reads base64 or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        super::base64_bytes::deserialize(deserializer)
    }
}

/// Serde for a list Go writes as `null` when empty (a nil slice).
pub mod opt_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Writes `null` when empty.
    pub fn serialize<S: Serializer, T: Serialize>(items: &[T], serializer: S) -> Result<S::Ok, S::Error> {
        if items.is_empty() {
            serializer.serialize_none()
        } else {
            serializer.collect_seq(items)
        }
    }

    /// Reads a list or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Vec<T>, D::Error> {
        Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
    }
}

/// What Lotus answers for a method that returns only an error: `null` (the docs show `{}`);
/// anything is accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Nothing;

impl Serialize for Nothing {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_none()
    }
}

impl<'de> Deserialize<'de> for Nothing {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer)?;
        Ok(Nothing)
    }
}
