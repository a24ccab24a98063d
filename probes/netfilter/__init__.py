"""Netfilter: which backends hold rules, and the rules that drop, read without loading
any kernel module (`modules.py` says what is loaded; probes ask it first)."""
