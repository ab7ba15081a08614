//! Host mode on real kernels, in namespaces of their own (rstwall-netlab):
//! the tc programs alone (test runs, overflow), then the whole source.
//! Everything here needs root and fails without it.

mod agreement;
mod classic;
mod hands_off;
mod l3;
mod programs;
mod support;
