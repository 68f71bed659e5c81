//! Shared test support: a seeded generator, the swarm harness and the simulator.
#![allow(dead_code)]

pub mod rng;
pub mod swarm;
