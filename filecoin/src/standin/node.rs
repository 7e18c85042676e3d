//! The stand-in's state and methods: the shared chain and one node's wallet and channels.

use std::collections::{BTreeMap, HashMap};

use cid::Cid;
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use hmac::{Hmac, Mac};
use multihash_codetable::{Code, MultihashDigest};
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::amount::{self, format_atto, format_fil};
use crate::types::{
    BlockHeader, ChainEpoch, ChannelAvailableFunds, ChannelInfo, MarketDeal, PaychGetOpts, PaychStatus, Signature,
    SignedVoucher, TipSet, Version, VoucherCreateResult,
};

/// Lotus's permission levels, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Perm {
    Read,
    Write,
    Sign,
    Admin,
}

impl Perm {
    fn name(self) -> &'static str {
        match self {
            Perm::Read => "read",
            Perm::Write => "write",
            Perm::Sign => "sign",
            Perm::Admin => "admin",
        }
    }
}

/// How a call failed, in go-jsonrpc's two kinds.
#[derive(Debug)]
pub(crate) enum RpcFailure {
    /// The method ran and returned an error (JSON-RPC code 1, HTTP 200).
    Method(String),
    /// The request could not be dispatched (HTTP 500).
    Protocol { code: i32, message: String },
}

type Answer = Result<Value, RpcFailure>;

fn fail<T>(message: impl Into<String>) -> Result<T, RpcFailure> {
    Err(RpcFailure::Method(message.into()))
}

const PAYCH_INBOUND: u8 = 1;
const PAYCH_OUTBOUND: u8 = 2;
const BLOCK_DELAY: u64 = 4;
const GENESIS_TIME: u64 = 1_700_000_000;

#[derive(Debug)]
struct ChannelActor {
    from: Address,
    to: Address,
    balance: TokenAmount,
    settling_at: Option<ChainEpoch>,
    collected: bool,
}

/// The simulated chain.
#[derive(Debug)]
pub(crate) struct Chain {
    pub(crate) height: ChainEpoch,
    pub(crate) settle_delay: ChainEpoch,
    pub(crate) deals: HashMap<u64, MarketDeal>,
    secret: [u8; 32],
    balances: HashMap<Address, TokenAmount>,
    channels: HashMap<Address, ChannelActor>,
    /// Message CID → the channel it created or funded.
    messages: HashMap<Cid, Address>,
    message_count: u64,
    /// Per channel, the best voucher per lane its recipient's node accepted.
    accepted: HashMap<Address, BTreeMap<u64, SignedVoucher>>,
}

impl Chain {
    pub(crate) fn new() -> Self {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        Self {
            height: 1,
            settle_delay: 0,
            deals: HashMap::new(),
            secret,
            balances: HashMap::new(),
            channels: HashMap::new(),
            messages: HashMap::new(),
            message_count: 0,
            accepted: HashMap::new(),
        }
    }

    pub(crate) fn new_account(&mut self, balance: TokenAmount) -> Address {
        let mut key = [0u8; 65];
        key[0] = 4;
        rand::rng().fill_bytes(&mut key[1..]);
        let address = Address::new_secp256k1(&key).expect("65 bytes is a secp256k1 key's length");
        self.balances.insert(address, balance);
        address
    }

    pub(crate) fn balance(&self, address: &Address) -> TokenAmount {
        self.balances.get(address).cloned().unwrap_or_default()
    }

    /// Applies a message at once: the head moves one epoch; answers its (simulated) CID.
    fn message(&mut self, description: &str, channel: Address) -> Cid {
        self.message_count += 1;
        self.height += 1;
        let text = format!("{}|{description}", self.message_count);
        let cid = Cid::new_v1(0x71, Code::Sha2_256.digest(text.as_bytes()));
        self.messages.insert(cid, channel);
        cid
    }

    fn debit(&mut self, account: &Address, value: &TokenAmount) -> Result<(), RpcFailure> {
        let balance = self.balance(account);
        match amount::checked_sub(&balance, value) {
            Ok(rest) => {
                self.balances.insert(*account, rest);
                Ok(())
            }
            Err(_) => fail(format!(
                "not enough funds (required: {}, balance: {}) in {account}",
                format_fil(value),
                format_fil(&balance)
            )),
        }
    }

    fn credit(&mut self, account: &Address, value: &TokenAmount) {
        let balance = self.balance(account) + value;
        self.balances.insert(*account, balance);
    }

    /// The stand-in's voucher "signature": HMAC-SHA256 by the chain's secret.
    fn sign(&self, payer: &Address, voucher: &SignedVoucher) -> Signature {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        let bytes = format!(
            "{payer}|{}|{}|{}|{}|{}|{}|{}|{}",
            voucher.channel_addr,
            voucher.lane,
            voucher.nonce,
            format_atto(&voucher.amount),
            voucher.time_lock_min,
            voucher.time_lock_max,
            voucher.min_settle_height,
            hex::encode(&voucher.secret_hash),
        );
        mac.update(bytes.as_bytes());
        Signature { sig_type: 1, data: mac.finalize().into_bytes().to_vec() }
    }

    fn tipset(&self) -> TipSet {
        let cid_of = |what: &str, height: ChainEpoch| {
            Cid::new_v1(0x71, Code::Sha2_256.digest(format!("{what}{height}").as_bytes()))
        };
        let zeros = |n: usize| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![0u8; n]);
        let block = BlockHeader {
            miner: Address::new_id(1000),
            ticket: json!({ "VRFProof": zeros(96) }),
            election_proof: json!({ "WinCount": 1, "VRFProof": zeros(96) }),
            beacon_entries: json!([]),
            win_post_proof: json!([]),
            parents: vec![cid_of("block", self.height - 1)],
            parent_weight: (self.height * 10).to_string(),
            height: self.height,
            parent_state_root: cid_of("state", self.height - 1),
            parent_message_receipts: cid_of("receipts", self.height - 1),
            messages: cid_of("messages", self.height),
            bls_aggregate: Some(Signature { sig_type: 2, data: vec![0; 96] }),
            timestamp: GENESIS_TIME + self.height.max(0) as u64 * BLOCK_DELAY,
            block_sig: Some(Signature { sig_type: 2, data: vec![0; 96] }),
            fork_signaling: 0,
            parent_base_fee: TokenAmount::from_atto(100),
        };
        TipSet { cids: vec![cid_of("block", self.height)], blocks: vec![block], height: self.height }
    }
}

/// One node's view of a channel (Lotus's `ChannelInfo` in its paych store).
#[derive(Debug)]
struct NodeChannel {
    direction: u8,
    control: Address,
    vouchers: Vec<SignedVoucher>,
    next_lane: u64,
    reserved: TokenAmount,
}

impl NodeChannel {
    /// Per lane: (highest nonce, that voucher's amount) — Lotus's lane states from its store.
    fn lanes(&self) -> BTreeMap<u64, (u64, TokenAmount)> {
        let mut lanes: BTreeMap<u64, (u64, TokenAmount)> = BTreeMap::new();
        for v in &self.vouchers {
            let entry = lanes.entry(v.lane).or_insert((0, TokenAmount::default()));
            if v.nonce >= entry.0 {
                *entry = (v.nonce, v.amount.clone());
            }
        }
        lanes
    }

    fn redeemed(&self) -> TokenAmount {
        self.lanes().values().map(|(_, a)| a.clone()).sum()
    }
}

/// One stand-in node: its wallet and its payment-channel store.
#[derive(Debug)]
pub(crate) struct Node {
    wallet: Vec<Address>,
    channels: BTreeMap<Address, NodeChannel>,
}

fn param<T: DeserializeOwned>(method: &str, params: &[Value], index: usize) -> Result<T, RpcFailure> {
    serde_json::from_value(params[index].clone()).map_err(|e| RpcFailure::Protocol {
        code: -32700,
        message: format!("unmarshaling params for '{method}' (param: {index}): {e}"),
    })
}

fn address_param(method: &str, params: &[Value], index: usize) -> Result<Address, RpcFailure> {
    let s: String = param(method, params, index)?;
    crate::types::parse_address(&s).map_err(|e| RpcFailure::Protocol {
        code: -32700,
        message: format!("unmarshaling params for '{method}' (param: {index}): invalid address {s:?}: {e}"),
    })
}

fn amount_param(method: &str, params: &[Value], index: usize) -> Result<TokenAmount, RpcFailure> {
    let s: String = param(method, params, index)?;
    amount::parse_atto(&s).map_err(|e| RpcFailure::Method(format!("{method}: {e}")))
}

fn cid_param(method: &str, params: &[Value], index: usize) -> Result<Cid, RpcFailure> {
    #[derive(serde::Deserialize)]
    struct Link(#[serde(with = "crate::types::cid_json")] Cid);
    Ok(param::<Link>(method, params, index)?.0)
}

fn to_value<T: serde::Serialize>(value: T) -> Answer {
    serde_json::to_value(value).map_err(|e| RpcFailure::Method(format!("encoding the answer: {e}")))
}

fn cid_value(cid: Cid) -> Value {
    json!({ "/": cid.to_string() })
}

impl Node {
    pub(crate) fn new(wallet: Vec<Address>) -> Self {
        Self { wallet, channels: BTreeMap::new() }
    }

    /// Runs `method` (its full name) with `params` for a caller holding `perm`.
    pub(crate) fn dispatch(&mut self, chain: &mut Chain, method: &str, params: &[Value], perm: Perm) -> Answer {
        let Some(name) = method.strip_prefix("Filecoin.") else {
            return Err(RpcFailure::Protocol { code: -32601, message: format!("method '{method}' not found") });
        };
        // (needed permission, parameter count), from Lotus's api-methods-v1-stable.md.
        let (need, count) = match name {
            "Version" | "ChainHead" | "PaychList" => (Perm::Read, 0),
            "WalletDefaultAddress" => (Perm::Write, 0),
            "WalletBalance" | "PaychStatus" => (Perm::Read, 1),
            "StateMarketStorageDeal" | "PaychVoucherCheckValid" => (Perm::Read, 2),
            "PaychGet" => (Perm::Sign, 4),
            "PaychGetWaitReady" | "PaychAvailableFunds" | "PaychAllocateLane" | "PaychSettle" | "PaychCollect" => {
                (Perm::Sign, 1)
            }
            "PaychAvailableFundsByFromTo" => (Perm::Sign, 2),
            "PaychVoucherCreate" => (Perm::Sign, 3),
            "PaychVoucherAdd" => (Perm::Write, 4),
            "PaychVoucherList" => (Perm::Write, 1),
            _ => return Err(RpcFailure::Protocol { code: -32601, message: format!("method '{method}' not found") }),
        };
        if perm < need {
            return fail(format!("missing permission to invoke '{name}' (need '{}')", need.name()));
        }
        if params.len() != count {
            return Err(RpcFailure::Protocol {
                code: -32602,
                message: format!("wrong param count (method '{method}'): {} != {count}", params.len()),
            });
        }
        let m = method;
        match name {
            "Version" => to_value(Version {
                version: "1.34.0+shoal-standin".into(),
                api_version: 0x02_03_00,
                block_delay: BLOCK_DELAY,
                agent: "lotus-standin (shoal, simulated chain)".into(),
            }),
            "ChainHead" => to_value(chain.tipset()),
            "WalletDefaultAddress" => match self.wallet.first() {
                Some(a) => Ok(Value::String(a.to_string())),
                None => fail("failed to get default key: key not found"),
            },
            "WalletBalance" => {
                let a = address_param(m, params, 0)?;
                Ok(Value::String(format_atto(&chain.balance(&a))))
            }
            "StateMarketStorageDeal" => {
                let id: u64 = param(m, params, 0)?;
                let _tipset: Option<Vec<Value>> = param(m, params, 1)?;
                match chain.deals.get(&id) {
                    Some(deal) => to_value(deal),
                    None => fail(format!("deal {id} not found")),
                }
            }
            "PaychGet" => {
                let from = address_param(m, params, 0)?;
                let to = address_param(m, params, 1)?;
                let amt = amount_param(m, params, 2)?;
                let opts: PaychGetOpts = param(m, params, 3)?;
                self.paych_get(chain, from, to, amt, opts)
            }
            "PaychGetWaitReady" => {
                let sentinel = cid_param(m, params, 0)?;
                match chain.messages.get(&sentinel) {
                    Some(channel) => Ok(Value::String(channel.to_string())),
                    None => fail(format!("Could not find wait msg cid {sentinel}")),
                }
            }
            "PaychAvailableFunds" => {
                let ch = address_param(m, params, 0)?;
                self.tracked(&ch)?;
                to_value(self.available(chain, ch))
            }
            "PaychAvailableFundsByFromTo" => {
                let from = address_param(m, params, 0)?;
                let to = address_param(m, params, 1)?;
                match self.outbound(chain, &from, &to) {
                    Some(ch) => to_value(self.available(chain, ch)),
                    None => to_value(ChannelAvailableFunds {
                        channel: None,
                        from,
                        to,
                        confirmed_amt: TokenAmount::default(),
                        pending_amt: TokenAmount::default(),
                        non_reserved_amt: TokenAmount::default(),
                        pending_available_amt: TokenAmount::default(),
                        pending_wait_sentinel: None,
                        queued_amt: TokenAmount::default(),
                        voucher_redeemed_amt: TokenAmount::default(),
                    }),
                }
            }
            "PaychList" => to_value(self.channels.keys().map(Address::to_string).collect::<Vec<_>>()),
            "PaychStatus" => {
                let ch = address_param(m, params, 0)?;
                let info = self.tracked(&ch)?;
                to_value(PaychStatus { control_addr: info.control, direction: info.direction })
            }
            "PaychAllocateLane" => {
                let ch = address_param(m, params, 0)?;
                let info = self.tracked_mut(&ch)?;
                let lane = info.next_lane;
                info.next_lane += 1;
                Ok(json!(lane))
            }
            "PaychVoucherCreate" => {
                let ch = address_param(m, params, 0)?;
                let amt = amount_param(m, params, 1)?;
                let lane: u64 = param(m, params, 2)?;
                self.voucher_create(chain, ch, amt, lane)
            }
            "PaychVoucherCheckValid" => {
                let ch = address_param(m, params, 0)?;
                let sv: SignedVoucher = param(m, params, 1)?;
                self.track_inbound(chain, ch)?;
                check_valid(chain, &self.channels[&ch], ch, &sv)?;
                Ok(Value::Null)
            }
            "PaychVoucherAdd" => {
                let ch = address_param(m, params, 0)?;
                let sv: SignedVoucher = param(m, params, 1)?;
                let _proof: Value = param(m, params, 2)?;
                let min_delta = amount_param(m, params, 3)?;
                self.voucher_add(chain, ch, sv, min_delta)
            }
            "PaychVoucherList" => {
                let ch = address_param(m, params, 0)?;
                to_value(&self.tracked(&ch)?.vouchers)
            }
            "PaychSettle" => {
                let ch = address_param(m, params, 0)?;
                self.tracked(&ch)?;
                let height = chain.height;
                let delay = chain.settle_delay;
                let actor = chain.channels.get_mut(&ch).ok_or_else(|| RpcFailure::Method("actor not found".into()))?;
                if actor.settling_at.is_some() {
                    return fail(format!("payment channel {ch} is already settling"));
                }
                actor.settling_at = Some(height + 1 + delay);
                Ok(cid_value(chain.message("settle", ch)))
            }
            "PaychCollect" => {
                let ch = address_param(m, params, 0)?;
                self.tracked(&ch)?;
                self.collect(chain, ch)
            }
            _ => unreachable!("every method named above is dispatched"),
        }
    }

    fn tracked(&self, ch: &Address) -> Result<&NodeChannel, RpcFailure> {
        self.channels.get(ch).ok_or_else(|| RpcFailure::Method("channel not tracked".into()))
    }

    fn tracked_mut(&mut self, ch: &Address) -> Result<&mut NodeChannel, RpcFailure> {
        self.channels.get_mut(ch).ok_or_else(|| RpcFailure::Method("channel not tracked".into()))
    }

    fn outbound(&self, chain: &Chain, from: &Address, to: &Address) -> Option<Address> {
        self.channels.iter().find_map(|(ch, info)| {
            let actor = chain.channels.get(ch)?;
            (info.direction == PAYCH_OUTBOUND && actor.from == *from && actor.to == *to && actor.settling_at.is_none())
                .then_some(*ch)
        })
    }

    fn available(&self, chain: &Chain, ch: Address) -> ChannelAvailableFunds {
        let info = &self.channels[&ch];
        let actor = &chain.channels[&ch];
        let non_reserved = amount::checked_sub(&actor.balance, &info.reserved).unwrap_or_default();
        ChannelAvailableFunds {
            channel: Some(ch),
            from: actor.from,
            to: actor.to,
            confirmed_amt: actor.balance.clone(),
            pending_amt: TokenAmount::default(),
            non_reserved_amt: non_reserved,
            pending_available_amt: TokenAmount::default(),
            pending_wait_sentinel: None,
            queued_amt: TokenAmount::default(),
            voucher_redeemed_amt: info.redeemed(),
        }
    }

    fn paych_get(
        &mut self,
        chain: &mut Chain,
        from: Address,
        to: Address,
        amt: TokenAmount,
        opts: PaychGetOpts,
    ) -> Answer {
        if !self.wallet.contains(&from) {
            return fail(format!("wallet does not have key for address {from}"));
        }
        let Some(ch) = self.outbound(chain, &from, &to) else {
            if opts.off_chain {
                return fail(format!(
                    "payment channel doesn't exist, create with 'lotus paych add-funds {from} {to} {}'",
                    format_fil(&amt).trim_end_matches(" FIL")
                ));
            }
            chain.debit(&from, &amt)?;
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            let ch = Address::new_actor(&key);
            chain
                .channels
                .insert(ch, ChannelActor { from, to, balance: amt.clone(), settling_at: None, collected: false });
            let mcid = chain.message(&format!("create paych {from} -> {to}"), ch);
            self.channels.insert(
                ch,
                NodeChannel {
                    direction: PAYCH_OUTBOUND,
                    control: from,
                    vouchers: Vec::new(),
                    next_lane: 0,
                    reserved: amt,
                },
            );
            // Lotus does not know the channel's address until the create message lands.
            return to_value(ChannelInfo { channel: None, wait_sentinel: Some(mcid) });
        };
        let available = self.available(chain, ch).non_reserved_amt;
        if amt <= available {
            self.channels.get_mut(&ch).expect("tracked").reserved += &amt;
            return to_value(ChannelInfo { channel: Some(ch), wait_sentinel: None });
        }
        if opts.off_chain {
            return fail(format!(
                "not enough funds available in the payment channel {ch}; add funds with 'lotus paych add-funds {from} {to} {}'",
                format_fil(&amt).trim_end_matches(" FIL")
            ));
        }
        let missing = &amt - &available;
        chain.debit(&from, &missing)?;
        chain.channels.get_mut(&ch).expect("actor").balance += &missing;
        let mcid = chain.message(&format!("add funds {ch}"), ch);
        self.channels.get_mut(&ch).expect("tracked").reserved += &amt;
        to_value(ChannelInfo { channel: Some(ch), wait_sentinel: Some(mcid) })
    }

    fn voucher_create(&mut self, chain: &mut Chain, ch: Address, amt: TokenAmount, lane: u64) -> Answer {
        let info =
            self.channels.get(&ch).filter(|i| i.direction == PAYCH_OUTBOUND).ok_or_else(|| {
                RpcFailure::Method("failed to get channel info by address: channel not tracked".into())
            })?;
        let nonce = info.vouchers.iter().filter(|v| v.lane == lane).map(|v| v.nonce).max().unwrap_or(0) + 1;
        let payer = chain.channels.get(&ch).map(|a| a.from).unwrap_or(info.control);
        let mut sv = SignedVoucher {
            channel_addr: ch,
            time_lock_min: 0,
            time_lock_max: 0,
            secret_hash: Vec::new(),
            extra: None,
            lane,
            nonce,
            amount: amt,
            min_settle_height: 0,
            merges: Vec::new(),
            signature: None,
        };
        sv.signature = Some(chain.sign(&payer, &sv));
        match check_valid(chain, info, ch, &sv) {
            Ok(()) => {}
            Err(Check::Shortfall(shortfall)) => return to_value(VoucherCreateResult { voucher: None, shortfall }),
            Err(Check::Invalid(message)) => return fail(format!("failed to persist voucher: {message}")),
        }
        let info = self.channels.get_mut(&ch).expect("tracked");
        info.vouchers.push(sv.clone());
        info.next_lane = info.next_lane.max(lane + 1);
        to_value(VoucherCreateResult { voucher: Some(sv), shortfall: TokenAmount::default() })
    }

    /// Lotus's `trackInboundChannel`: a channel this node is paid by, known once asked about.
    fn track_inbound(&mut self, chain: &Chain, ch: Address) -> Result<(), RpcFailure> {
        if self.channels.contains_key(&ch) {
            return Ok(());
        }
        let actor = chain.channels.get(&ch).ok_or_else(|| RpcFailure::Method("actor not found".into()))?;
        if !self.wallet.contains(&actor.to) {
            return fail(format!(
                "cannot add voucher for channel {ch}: wallet does not have key for address {}",
                actor.to
            ));
        }
        self.channels.insert(
            ch,
            NodeChannel {
                direction: PAYCH_INBOUND,
                control: actor.to,
                vouchers: Vec::new(),
                next_lane: 0,
                reserved: TokenAmount::default(),
            },
        );
        Ok(())
    }

    fn voucher_add(&mut self, chain: &mut Chain, ch: Address, sv: SignedVoucher, min_delta: TokenAmount) -> Answer {
        self.track_inbound(chain, ch)?;
        let info = &self.channels[&ch];
        if info.vouchers.contains(&sv) {
            return Ok(Value::String("0".into()));
        }
        check_valid(chain, info, ch, &sv)?;
        let lane_amount = info.lanes().get(&sv.lane).map(|(_, a)| a.clone()).unwrap_or_default();
        let delta = &sv.amount - &lane_amount;
        if min_delta > delta {
            return fail(format!(
                "addVoucher: supplied token amount too low; minD={}, D={}; laneAmt={}; v.Amt={}",
                format_atto(&min_delta),
                format_atto(&delta),
                format_atto(&lane_amount),
                format_atto(&sv.amount)
            ));
        }
        let info = self.channels.get_mut(&ch).expect("tracked");
        info.vouchers.push(sv.clone());
        info.next_lane = info.next_lane.max(sv.lane + 1);
        if info.direction == PAYCH_INBOUND {
            chain.accepted.entry(ch).or_default().insert(sv.lane, sv);
        }
        Ok(Value::String(format_atto(&delta)))
    }

    fn collect(&mut self, chain: &mut Chain, ch: Address) -> Answer {
        let height = chain.height;
        let actor = chain.channels.get(&ch).ok_or_else(|| RpcFailure::Method("actor not found".into()))?;
        match actor.settling_at {
            None => return fail(format!("payment channel {ch} is not settling; call PaychSettle first")),
            Some(at) if at > height => {
                return fail(format!("payment channel {ch} settles at epoch {at}; the head is at {height}"))
            }
            Some(_) if actor.collected => return fail(format!("payment channel {ch} was already collected")),
            Some(_) => {}
        }
        let (from, to, balance) = (actor.from, actor.to, actor.balance.clone());
        let redeemed: TokenAmount =
            chain.accepted.get(&ch).map(|l| l.values().map(|v| v.amount.clone()).sum()).unwrap_or_default();
        let paid = redeemed.min(balance.clone());
        chain.credit(&to, &paid);
        chain.credit(&from, &(&balance - &paid));
        let actor = chain.channels.get_mut(&ch).expect("actor");
        actor.balance = TokenAmount::default();
        actor.collected = true;
        Ok(cid_value(chain.message("collect", ch)))
    }
}

/// Why a voucher is not valid.
enum Check {
    /// The channel cannot cover it.
    Shortfall(TokenAmount),
    /// Anything else, Lotus's message.
    Invalid(String),
}

impl From<Check> for RpcFailure {
    fn from(check: Check) -> Self {
        match check {
            Check::Shortfall(s) => RpcFailure::Method(format!(
                "not enough funds in channel to cover voucher - shortfall: {}",
                format_atto(&s)
            )),
            Check::Invalid(message) => RpcFailure::Method(message),
        }
    }
}

/// Lotus's `checkVoucherValidUnlocked`, in its order, with its messages.
fn check_valid(chain: &Chain, info: &NodeChannel, ch: Address, sv: &SignedVoucher) -> Result<(), Check> {
    let invalid = |m: &str| Err(Check::Invalid(m.to_owned()));
    if sv.channel_addr != ch {
        return Err(Check::Invalid(format!(
            "voucher ChannelAddr doesn't match channel address, got {}, expected {ch}",
            sv.channel_addr
        )));
    }
    if sv.extra.is_some() {
        return invalid("voucher is Message Locked");
    }
    if sv.time_lock_max != 0 {
        return invalid("voucher is Max Time Locked");
    }
    if sv.time_lock_min != 0 {
        return invalid("voucher is Min Time Locked");
    }
    if !sv.secret_hash.is_empty() {
        return invalid("voucher is Hash Locked");
    }
    let Some(actor) = chain.channels.get(&ch) else {
        return invalid("actor not found");
    };
    let mut unsigned = sv.clone();
    unsigned.signature = None;
    if sv.signature.as_ref() != Some(&chain.sign(&actor.from, &unsigned)) {
        return invalid("signature did not match");
    }
    let lanes = info.lanes();
    if let Some((nonce, redeemed)) = lanes.get(&sv.lane) {
        if sv.nonce <= *nonce {
            return invalid("nonce too low");
        }
        if sv.amount <= *redeemed {
            return invalid("voucher amount is lower than amount for voucher with lower nonce");
        }
    }
    let others: TokenAmount = lanes.iter().filter(|(lane, _)| **lane != sv.lane).map(|(_, (_, a))| a.clone()).sum();
    let total = others + &sv.amount;
    if actor.balance < total {
        return Err(Check::Shortfall(total - &actor.balance));
    }
    if !sv.merges.is_empty() {
        return invalid("don't currently support paych lane merges");
    }
    Ok(())
}
