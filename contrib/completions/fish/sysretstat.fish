# fish completion for sysretstat (loaded from vendor_completions.d).
# The candidates come from sysretstat itself: see sysretstat(8), COMPLETION.
sysretstat completion fish 2>/dev/null | source
