"""Reports: ``report()``, its HTML builder and statistics, the result cache and the executors."""
