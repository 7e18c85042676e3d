//! The client's wire shapes against Lotus's documentation: for every method the client uses,
//! a recorded-answer server replays the documented result, and the test checks that the
//! client sent exactly the documented parameters and read the documented result.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use cid::Cid;
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use serde_json::{json, Value};
use shoal_filecoin::types::{PaychGetOpts, SignedVoucher};
use shoal_filecoin::{LotusClient, LotusError};

const FIXTURES: &str = include_str!("fixtures/lotus-api-v1-examples.json");

fn fixture(method: &str) -> (Value, Value) {
    let all: Value = serde_json::from_str(FIXTURES).unwrap();
    let m = &all["methods"][method];
    assert!(!m.is_null(), "no fixture for {method}");
    (m["params"].clone(), m["result"].clone())
}

#[derive(Clone, Default)]
struct Replay {
    /// The answer to give (a whole `result`, or an `error` object).
    answer: Arc<Mutex<Value>>,
    /// The requests received: (method, params).
    seen: Arc<Mutex<Vec<(String, Value)>>>,
}

async fn replay(State(r): State<Replay>, Json(request): Json<Value>) -> Json<Value> {
    r.seen.lock().unwrap().push((
        request["method"].as_str().unwrap_or_default().to_owned(),
        request.get("params").cloned().unwrap_or(Value::Null),
    ));
    let answer = r.answer.lock().unwrap().clone();
    let mut body = json!({ "jsonrpc": "2.0", "id": request["id"] });
    if answer.get("error").is_some() {
        body["error"] = answer["error"].clone();
    } else {
        body["result"] = answer;
    }
    Json(body)
}

/// A server that replays recorded Lotus answers and records what it was asked.
async fn recorded_lotus() -> (LotusClient, Replay) {
    let r = Replay::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/rpc/v1", listener.local_addr().unwrap());
    let app = Router::new().route("/rpc/v1", post(replay)).with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (LotusClient::new(&url, Some("recorded")).unwrap(), r)
}

impl Replay {
    fn answer(&self, method: &str) -> Value {
        let (_, result) = fixture(method);
        *self.answer.lock().unwrap() = result.clone();
        result
    }

    /// The last request's method and params, checked against the fixture's params.
    fn assert_sent(&self, method: &str) {
        let (params, _) = fixture(method);
        let (sent_method, sent_params) = self.seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(sent_method, method);
        assert_eq!(sent_params, params, "{method}: parameters differ from Lotus's documentation");
    }
}

fn f01234() -> Address {
    Address::new_id(1234)
}

fn doc_cid() -> Cid {
    "bafy2bzacea3wsdh6y3a36tb3skempjoxqpuyompjbmfeyf34fi3uy6uue42v4".parse().unwrap()
}

fn doc_voucher() -> SignedVoucher {
    let (params, _) = fixture("Filecoin.PaychVoucherCheckValid");
    serde_json::from_value(params[1].clone()).unwrap()
}

fn same<T: serde::Serialize>(method: &str, parsed: T, documented: &Value) {
    assert_eq!(&serde_json::to_value(parsed).unwrap(), documented, "{method}: the parsed answer lost something");
}

#[tokio::test]
async fn every_method_matches_lotus_documentation() {
    let (lotus, r) = recorded_lotus().await;

    let m = "Filecoin.Version";
    let doc = r.answer(m);
    let version = lotus.version().await.unwrap();
    r.assert_sent(m);
    assert_eq!(version.api_version, 131840);
    same(m, version, &doc);

    let m = "Filecoin.ChainHead";
    let doc = r.answer(m);
    let head = lotus.chain_head().await.unwrap();
    r.assert_sent(m);
    assert_eq!(head.height, 4863283);
    assert_eq!(head.blocks[0].miner, Address::new_id(1938223));
    same(m, head, &doc);

    let m = "Filecoin.WalletDefaultAddress";
    r.answer(m);
    assert_eq!(lotus.wallet_default_address().await.unwrap(), f01234());
    r.assert_sent(m);

    let m = "Filecoin.WalletBalance";
    r.answer(m);
    assert_eq!(lotus.wallet_balance(&f01234()).await.unwrap(), TokenAmount::from_atto(0));
    r.assert_sent(m);

    let m = "Filecoin.StateMarketStorageDeal";
    let doc = r.answer(m);
    let tipset: Vec<Cid> =
        vec![doc_cid(), "bafy2bzacebp3shtrn43k7g3unredz7fxn4gj533d3o43tqn2p2ipxxhrvchve".parse().unwrap()];
    let deal = lotus.state_market_storage_deal(5432, &tipset).await.unwrap();
    r.assert_sent(m);
    assert_eq!(deal.proposal.piece_size, 1032);
    same(m, deal, &doc);

    let m = "Filecoin.PaychGet";
    let doc = r.answer(m);
    let info = lotus
        .paych_get(&f01234(), &f01234(), &TokenAmount::from_atto(0), PaychGetOpts { off_chain: true })
        .await
        .unwrap();
    r.assert_sent(m);
    assert_eq!(info.channel, Some(f01234()));
    assert_eq!(info.wait_sentinel, Some(doc_cid()));
    same(m, info, &doc);

    let m = "Filecoin.PaychGetWaitReady";
    r.answer(m);
    assert_eq!(lotus.paych_get_wait_ready(&doc_cid()).await.unwrap(), f01234());
    r.assert_sent(m);

    let m = "Filecoin.PaychAvailableFunds";
    let doc = r.answer(m);
    let funds = lotus.paych_available_funds(&f01234()).await.unwrap();
    r.assert_sent(m);
    same(m, funds, &doc);

    let m = "Filecoin.PaychAvailableFundsByFromTo";
    let doc = r.answer(m);
    let funds = lotus.paych_available_funds_by_from_to(&f01234(), &f01234()).await.unwrap();
    r.assert_sent(m);
    same(m, funds, &doc);

    let m = "Filecoin.PaychList";
    r.answer(m);
    assert_eq!(lotus.paych_list().await.unwrap(), vec![f01234()]);
    r.assert_sent(m);

    let m = "Filecoin.PaychStatus";
    let doc = r.answer(m);
    let status = lotus.paych_status(&f01234()).await.unwrap();
    r.assert_sent(m);
    same(m, status, &doc);

    let m = "Filecoin.PaychAllocateLane";
    r.answer(m);
    assert_eq!(lotus.paych_allocate_lane(&f01234()).await.unwrap(), 42);
    r.assert_sent(m);

    let m = "Filecoin.PaychVoucherCreate";
    let doc = r.answer(m);
    let created = lotus.paych_voucher_create(&f01234(), &TokenAmount::from_atto(0), 42).await.unwrap();
    r.assert_sent(m);
    assert_eq!(created.voucher.as_ref().unwrap().lane, 42);
    same(m, created, &doc);

    let m = "Filecoin.PaychVoucherCheckValid";
    r.answer(m);
    lotus.paych_voucher_check_valid(&f01234(), &doc_voucher()).await.unwrap();
    r.assert_sent(m);

    let m = "Filecoin.PaychVoucherAdd";
    r.answer(m);
    let delta =
        lotus.paych_voucher_add(&f01234(), &doc_voucher(), b"byte array", &TokenAmount::from_atto(0)).await.unwrap();
    r.assert_sent(m);
    assert_eq!(delta, TokenAmount::from_atto(0));

    let m = "Filecoin.PaychVoucherList";
    let doc = r.answer(m);
    let list = lotus.paych_voucher_list(&f01234()).await.unwrap();
    r.assert_sent(m);
    same(m, list, &doc);

    for m in ["Filecoin.PaychSettle", "Filecoin.PaychCollect"] {
        r.answer(m);
        let cid = if m.ends_with("Settle") {
            lotus.paych_settle(&f01234()).await.unwrap()
        } else {
            lotus.paych_collect(&f01234()).await.unwrap()
        };
        r.assert_sent(m);
        assert_eq!(cid, doc_cid());
    }
}

#[tokio::test]
async fn lotus_go_shapes_for_absent_values_are_read() {
    let (lotus, r) = recorded_lotus().await;
    // A channel still being created: Go's undefined address and a message to wait for.
    *r.answer.lock().unwrap() = json!({ "Channel": "<empty>", "WaitSentinel": { "/": doc_cid().to_string() } });
    let info =
        lotus.paych_get(&f01234(), &f01234(), &TokenAmount::from_atto(1), PaychGetOpts::default()).await.unwrap();
    assert_eq!(info.channel, None);
    // Enough funds already: no message (Go's undefined CID is `null`).
    *r.answer.lock().unwrap() = json!({ "Channel": "t01234", "WaitSentinel": null });
    let info =
        lotus.paych_get(&f01234(), &f01234(), &TokenAmount::from_atto(1), PaychGetOpts::default()).await.unwrap();
    assert_eq!((info.channel, info.wait_sentinel), (Some(f01234()), None));
    // A shortfall: no voucher.
    *r.answer.lock().unwrap() = json!({ "Voucher": null, "Shortfall": "5" });
    let created = lotus.paych_voucher_create(&f01234(), &TokenAmount::from_atto(5), 0).await.unwrap();
    assert_eq!((created.voucher, created.shortfall), (None, TokenAmount::from_atto(5)));
    // An empty list is `null` in Go.
    *r.answer.lock().unwrap() = Value::Null;
    assert!(lotus.paych_list().await.unwrap().is_empty());
}

#[tokio::test]
async fn malformed_answers_are_named() {
    let (lotus, r) = recorded_lotus().await;
    for bad in [json!("-5"), json!("abc"), json!("9999999999999999999999999999999"), json!(5)] {
        *r.answer.lock().unwrap() = bad.clone();
        let e = lotus.wallet_balance(&f01234()).await.unwrap_err();
        assert!(matches!(&e, LotusError::Malformed { method, .. } if method == "Filecoin.WalletBalance"), "{bad}: {e}");
    }
    *r.answer.lock().unwrap() = json!({ "Version": "x" });
    assert!(matches!(lotus.version().await, Err(LotusError::Malformed { .. })));
    *r.answer.lock().unwrap() = json!("not-an-address");
    assert!(matches!(lotus.wallet_default_address().await, Err(LotusError::Malformed { .. })));
}

#[tokio::test]
async fn negative_and_overflowing_amounts_are_refused_before_sending() {
    let (lotus, r) = recorded_lotus().await;
    let too_much = shoal_filecoin::amount::max_amount() + TokenAmount::from_atto(1);
    for amount in [TokenAmount::from_atto(-1), too_much] {
        let e = lotus.paych_voucher_create(&f01234(), &amount, 0).await.unwrap_err();
        assert!(matches!(e, LotusError::Amount { .. }), "{e}");
        let e = lotus.paych_get(&f01234(), &f01234(), &amount, PaychGetOpts::default()).await.unwrap_err();
        assert!(matches!(e, LotusError::Amount { .. }), "{e}");
        let e = lotus.paych_voucher_add(&f01234(), &doc_voucher(), &[], &amount).await.unwrap_err();
        assert!(matches!(e, LotusError::Amount { .. }), "{e}");
    }
    assert!(r.seen.lock().unwrap().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_lotus_error_names_method_code_and_message() {
    let (lotus, r) = recorded_lotus().await;
    *r.answer.lock().unwrap() =
        json!({ "error": { "code": 1, "message": "resolution lookup failed (f01234): actor not found" } });
    let e = lotus.wallet_balance(&f01234()).await.unwrap_err();
    match &e {
        LotusError::Rpc { method, code, message } => {
            assert_eq!((method.as_str(), *code), ("Filecoin.WalletBalance", 1));
            assert!(message.contains("actor not found"));
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("Filecoin.WalletBalance"));
}
