//! One integration-test binary: the real `release` binary driven through its contract.

mod actions;
mod bad_input;
mod cache_clear;
mod cli;
mod engine;
mod examples;
mod git_revert;
mod harness;
mod incident;
mod init;
mod production;
mod promotion;
mod resume;
mod status;
mod validate;
