//! One integration-test binary: the real `release` binary driven through its contract.

mod bad_input;
mod cli;
mod engine;
mod examples;
mod harness;
mod init;
mod validate;
