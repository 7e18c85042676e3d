//! `trap`: always fails with a panic. Guests are built with `panic = "abort"`,
//! so under WASI the message goes to stderr and the module then executes
//! `unreachable`, which the host sees as a trap.

fn main() {
    panic!("deliberate trap: the trap test program always panics");
}
