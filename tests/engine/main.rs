//! The protocol rules of the sans-IO engine, one scenario each, with engines wired by hand
//! and time passed in. One harness (`harness`: the hand-wired network `Net` and the frame
//! and engine helpers), and the scenarios in rooms by concern.

mod harness;

mod bans;
mod basics;
mod durable;
mod pull;
mod retention;
mod tags;
mod tree;
mod validation;
mod want_turns;
