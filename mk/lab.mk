# Whole deployments: simulated machines (fast) and VMs under TCG (slow).
BENCH_TARGETS += bench-sim bench-vm
.PHONY: bench-sim bench-vm
bench-sim:
	$(GO) test -run '^$$' -bench 'BenchmarkSimDeploy$$' -benchtime 5x -timeout 30m ./harness/lab/
	$(GO) test -run '^$$' -bench 'BenchmarkSimDeploy100' -benchtime 1x -timeout 30m ./harness/lab/
bench-vm:
	$(GO) test -run '^$$' -bench 'BenchmarkVMDeploy' -benchtime 3x -timeout 90m ./harness/lab/
