//! Property tests of the CAR reader: no input, however hostile, makes it panic, and whatever it
//! does hand out is a verified block. Case counts are small to keep `cargo test` quick.

use proptest::prelude::*;
use shoal_content::car::{export_car, CarReader, DagScope, WalkOptions};
use shoal_content::Block;

use crate::car_support::*;

/// Reads `bytes` to the end or the first error; returns the blocks read before that.
fn read_car(bytes: &[u8]) -> Vec<Block> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let mut blocks = Vec::new();
        let Ok(mut car) = CarReader::new(bytes, "fuzz").await else {
            return blocks;
        };
        while let Ok(Some(block)) = car.next_block().await {
            blocks.push(block);
        }
        blocks
    })
}

fn sample_car() -> (Vec<u8>, Vec<Block>) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let dag = sample_dag();
        let store = store_with(&dag.blocks).await;
        let mut car = Vec::new();
        export_car(&store, &dag.root, &mut car, DagScope::All, WalkOptions::default()).await.unwrap();
        (car, dag.blocks)
    })
}

/// An edit to a valid CAR.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Truncate { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..32).prop_map(|(at, len)| Mutation::Remove { at, len }),
    ]
}

fn apply(car: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut out = car.to_vec();
    for m in mutations {
        if out.is_empty() {
            break;
        }
        match m {
            Mutation::Flip { at, mask } => {
                let i = at % out.len();
                out[i] ^= mask;
            }
            Mutation::Truncate { at } => out.truncate(at % out.len()),
            Mutation::Insert { at, bytes } => {
                let i = at % (out.len() + 1);
                out.splice(i..i, bytes.iter().copied());
            }
            Mutation::Remove { at, len } => {
                let i = at % out.len();
                let end = (i + len).min(out.len());
                out.drain(i..end);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(crate::proptest_config(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        read_car(&bytes);
    }

    #[test]
    fn mutated_cars_never_panic_and_only_yield_genuine_blocks(mutations in prop::collection::vec(mutation(), 1..4)) {
        let (car, originals) = sample_car();
        for block in read_car(&apply(&car, &mutations)) {
            // A mutation may turn a CID into another valid CID. If it changed the multihash, the
            // bytes no longer hash to it and the block is refused; if it changed only the version
            // or codec, the bytes still hash to it — content addressing covers the multihash —
            // and the block is the same bytes under the same multihash as one that was written.
            let genuine = originals
                .iter()
                .any(|o| o.data() == block.data() && o.cid().hash() == block.cid().hash());
            prop_assert!(genuine, "unexpected block {}", block.cid());
        }
    }
}
