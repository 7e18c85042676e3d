//! The client against the Lotus stand-in: every method the client uses, the payment-channel
//! flow between a paying node and a paid node on one simulated chain, voucher checks, auth
//! and errors.

use fvm_shared::econ::TokenAmount;
use serde_json::{json, Value};
use shoal_filecoin::amount::parse_fil;
use shoal_filecoin::standin::StandInChain;
use shoal_filecoin::types::{DealProposal, DealState, MarketDeal, PaychGetOpts};
use shoal_filecoin::{LotusClient, LotusError};

fn fil(s: &str) -> TokenAmount {
    parse_fil(s).unwrap()
}

fn lotus_refused(e: &LotusError, needle: &str) -> bool {
    matches!(e, LotusError::Rpc { code: 1, message, .. } if message.contains(needle))
}

#[tokio::test]
async fn payment_channel_flow_between_two_nodes() {
    let chain = StandInChain::new();
    let payer = chain.new_account(fil("10"));
    let provider = chain.new_account(fil("0"));
    let client_node = chain.start_node(vec![payer], "client-token").await.unwrap();
    let provider_node = chain.start_node(vec![provider], "provider-token").await.unwrap();
    let (client, paid) = (client_node.client(), provider_node.client());

    let version = client.version().await.unwrap();
    assert_eq!(version.api_version, 0x020300);
    let head = client.chain_head().await.unwrap();
    assert_eq!(head.height, chain.height());
    assert_eq!(client.wallet_default_address().await.unwrap(), payer);
    assert_eq!(client.wallet_balance(&payer).await.unwrap(), fil("10"));

    // Create a channel with 1 FIL: the address comes from waiting on the create message.
    let info = client.paych_get(&payer, &provider, &fil("1"), PaychGetOpts::default()).await.unwrap();
    assert_eq!(info.channel, None);
    let ch = client.paych_get_wait_ready(&info.wait_sentinel.unwrap()).await.unwrap();
    assert_eq!(client.wallet_balance(&payer).await.unwrap(), fil("9"));
    assert!(client.chain_head().await.unwrap().height > head.height);
    assert_eq!(client.paych_list().await.unwrap(), vec![ch]);
    let status = client.paych_status(&ch).await.unwrap();
    assert_eq!((status.control_addr, status.direction), (payer, 2));
    let funds = client.paych_available_funds(&ch).await.unwrap();
    assert_eq!((funds.channel, funds.from, funds.to), (Some(ch), payer, provider));
    assert_eq!((funds.confirmed_amt, funds.non_reserved_amt), (fil("1"), fil("0")));
    assert_eq!(client.paych_available_funds_by_from_to(&payer, &provider).await.unwrap().channel, Some(ch));

    // Vouchers on a fresh lane, cumulative amounts, checked and added by the provider's node.
    let lane = client.paych_allocate_lane(&ch).await.unwrap();
    assert_eq!(lane, 0);
    let first = client.paych_voucher_create(&ch, &fil("0.3"), lane).await.unwrap().voucher.unwrap();
    assert_eq!((first.lane, first.nonce), (lane, 1));
    paid.paych_voucher_check_valid(&ch, &first).await.unwrap();
    assert_eq!(paid.paych_voucher_add(&ch, &first, &[], &fil("0.3")).await.unwrap(), fil("0.3"));
    assert_eq!(
        paid.paych_voucher_add(&ch, &first, &[], &fil("0")).await.unwrap(),
        fil("0"),
        "a re-added voucher adds nothing"
    );
    let second = client.paych_voucher_create(&ch, &fil("0.5"), lane).await.unwrap().voucher.unwrap();
    assert_eq!(second.nonce, 2);
    // minDelta above what the voucher adds: refused, as Lotus does.
    let e = paid.paych_voucher_add(&ch, &second, &[], &fil("0.3")).await.unwrap_err();
    assert!(lotus_refused(&e, "supplied token amount too low"), "{e}");
    assert_eq!(paid.paych_voucher_add(&ch, &second, &[], &fil("0.2")).await.unwrap(), fil("0.2"));
    assert_eq!(paid.paych_status(&ch).await.unwrap().direction, 1);
    assert_eq!(paid.paych_voucher_list(&ch).await.unwrap(), vec![first.clone(), second.clone()]);
    assert_eq!(client.paych_available_funds(&ch).await.unwrap().voucher_redeemed_amt, fil("0.5"));

    // An older voucher after a newer one: nonce too low.
    let e = paid.paych_voucher_check_valid(&ch, &first).await.unwrap_err();
    assert!(lotus_refused(&e, "nonce too low"), "{e}");
    // A tampered amount: the signature no longer matches.
    let mut forged = second.clone();
    forged.nonce = 3;
    forged.amount = fil("0.9");
    let e = paid.paych_voucher_check_valid(&ch, &forged).await.unwrap_err();
    assert!(lotus_refused(&e, "signature did not match"), "{e}");
    // Amounts are monotone on a lane.
    let e = client.paych_voucher_create(&ch, &fil("0.4"), lane).await.unwrap_err();
    assert!(lotus_refused(&e, "voucher amount is lower than amount for voucher with lower nonce"), "{e}");
    // Beyond the channel's funds: no voucher, the shortfall.
    let short = client.paych_voucher_create(&ch, &fil("1.5"), lane).await.unwrap();
    assert_eq!((short.voucher, short.shortfall), (None, fil("0.5")));
    // Lanes add up: 0.5 on lane 0 and 0.6 on lane 1 exceed 1 FIL.
    let lane1 = client.paych_allocate_lane(&ch).await.unwrap();
    assert_eq!(lane1, 1);
    assert_eq!(client.paych_voucher_create(&ch, &fil("0.6"), lane1).await.unwrap().shortfall, fil("0.1"));

    // More funds: the reservation exceeds what is free, so funds are added on chain.
    let info = client.paych_get(&payer, &provider, &fil("0.5"), PaychGetOpts::default()).await.unwrap();
    assert_eq!(info.channel, Some(ch));
    assert_eq!(client.paych_get_wait_ready(&info.wait_sentinel.unwrap()).await.unwrap(), ch);
    assert_eq!(client.paych_available_funds(&ch).await.unwrap().confirmed_amt, fil("1.5"));
    assert_eq!(client.wallet_balance(&payer).await.unwrap(), fil("8.5"));
    // Off-chain only, with nothing left to reserve: refused with Lotus's hint.
    let e = client.paych_get(&payer, &provider, &fil("1"), PaychGetOpts { off_chain: true }).await.unwrap_err();
    assert!(lotus_refused(&e, "not enough funds available in the payment channel"), "{e}");

    // A node whose wallet is not the recipient's cannot take vouchers for the channel.
    let stranger = chain.start_node(vec![chain.new_account(fil("0"))], "t").await.unwrap();
    let e = stranger.client().paych_voucher_add(&ch, &second, &[], &fil("0")).await.unwrap_err();
    assert!(lotus_refused(&e, "wallet does not have key for address"), "{e}");

    // Settle, wait out the settlement delay, collect: the provider gets its best voucher.
    chain.set_settle_delay(10);
    paid.paych_settle(&ch).await.unwrap();
    let e = paid.paych_collect(&ch).await.unwrap_err();
    assert!(lotus_refused(&e, "settles at epoch"), "{e}");
    chain.advance(10);
    paid.paych_collect(&ch).await.unwrap();
    assert_eq!(paid.wallet_balance(&provider).await.unwrap(), fil("0.5"));
    assert_eq!(client.wallet_balance(&payer).await.unwrap(), fil("9.5"));
}

#[tokio::test]
async fn market_deals_and_lotus_errors() {
    let chain = StandInChain::new();
    let who = chain.new_account(fil("1"));
    chain.add_deal(
        7,
        MarketDeal {
            proposal: DealProposal {
                piece_cid: "bafy2bzacea3wsdh6y3a36tb3skempjoxqpuyompjbmfeyf34fi3uy6uue42v4".parse().unwrap(),
                piece_size: 1 << 20,
                verified_deal: false,
                client: who,
                provider: fvm_shared::address::Address::new_id(1000),
                label: "bafy-payload".into(),
                start_epoch: 10,
                end_epoch: 1000,
                storage_price_per_epoch: fil("0.0000001"),
                provider_collateral: fil("0"),
                client_collateral: fil("0"),
            },
            state: DealState { sector_number: 3, sector_start_epoch: 12, last_updated_epoch: -1, slash_epoch: -1 },
        },
    );
    let node = chain.start_node(vec![who], "secret").await.unwrap();
    let lotus = node.client();
    let deal = lotus.state_market_storage_deal(7, &[]).await.unwrap();
    assert_eq!((deal.proposal.client, deal.state.sector_number), (who, 3));

    // A method's own failure: code 1 and Lotus's message, naming the method.
    let e = lotus.state_market_storage_deal(8, &[]).await.unwrap_err();
    assert!(lotus_refused(&e, "deal 8 not found"), "{e}");
    assert_eq!(e.method(), Some("Filecoin.StateMarketStorageDeal"));
    // go-jsonrpc's dispatch errors come with HTTP 500; the client still reads them.
    let e = lotus.call::<Value>("Filecoin.NoSuchMethod", Default::default()).await.unwrap_err();
    assert!(matches!(&e, LotusError::Rpc { code: -32601, message, .. } if message.contains("not found")), "{e}");
    let e = lotus.call::<Value>("Filecoin.WalletBalance", Default::default()).await.unwrap_err();
    assert!(
        matches!(&e, LotusError::Rpc { code: -32602, message, .. } if message.contains("wrong param count")),
        "{e}"
    );
    // Unknown channel.
    let e = lotus.paych_available_funds(&who).await.unwrap_err();
    assert!(lotus_refused(&e, "channel not tracked"), "{e}");
    // No channel yet, off-chain only.
    let e = lotus.paych_get(&who, &who, &fil("1"), PaychGetOpts { off_chain: true }).await.unwrap_err();
    assert!(lotus_refused(&e, "payment channel doesn't exist"), "{e}");
    // Funding a channel beyond the wallet.
    let e = lotus.paych_get(&who, &who, &fil("2"), PaychGetOpts::default()).await.unwrap_err();
    assert!(lotus_refused(&e, "not enough funds"), "{e}");
}

#[tokio::test]
async fn bearer_token_permissions() {
    let chain = StandInChain::new();
    let node = chain.start_node(vec![chain.new_account(fil("1"))], "right").await.unwrap();
    // No token: read methods only, as Lotus.
    let anonymous = LotusClient::new(&node.url(), None).unwrap();
    anonymous.version().await.unwrap();
    let e = anonymous.wallet_default_address().await.unwrap_err();
    assert!(
        matches!(&e, LotusError::Unauthorized { detail, .. } if detail == "missing permission to invoke 'WalletDefaultAddress' (need 'write')"),
        "{e}"
    );
    // A wrong token: HTTP 401.
    let wrong = LotusClient::new(&node.url(), Some("wrong")).unwrap();
    let e = wrong.version().await.unwrap_err();
    assert!(matches!(&e, LotusError::Unauthorized { detail, .. } if detail.contains("401")), "{e}");
    // The right one.
    node.client().wallet_default_address().await.unwrap();
    assert_eq!(node.last_request().unwrap().method, "Filecoin.WalletDefaultAddress");
}

#[tokio::test]
async fn params_absent_or_empty_are_both_accepted() {
    let chain = StandInChain::new();
    let node = chain.start_node(vec![], "t").await.unwrap();
    let http = reqwest::Client::new();
    for request in [
        json!({ "jsonrpc": "2.0", "id": 1, "method": "Filecoin.Version", "params": [] }),
        json!({ "jsonrpc": "2.0", "id": 2, "method": "Filecoin.Version" }),
        json!({ "jsonrpc": "2.0", "id": 3, "method": "Filecoin.Version", "params": null }),
    ] {
        let answer: Value = http.post(node.url()).json(&request).send().await.unwrap().json().await.unwrap();
        assert_eq!(answer["id"], request["id"]);
        assert_eq!(answer["result"]["APIVersion"], 131840, "{answer}");
    }
    // jsonrpsee leaves `params` out when there are none.
    node.client().version().await.unwrap();
    assert_eq!(node.last_request().unwrap().params, None);
}

#[tokio::test]
async fn unreachable_node_and_bad_url() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/rpc/v1", closed.local_addr().unwrap());
    drop(closed);
    let e = LotusClient::new(&url, None).unwrap().version().await.unwrap_err();
    assert!(matches!(&e, LotusError::Unreachable { method, .. } if method == "Filecoin.Version"), "{e}");
    assert!(matches!(LotusClient::new("ftp://x", None), Err(LotusError::Config { .. })));
    assert!(matches!(LotusClient::new("not a url", None), Err(LotusError::Config { .. })));
}
