# Metadata service, status webhook, commissioning and the deployment lifecycle (fakemaas).
# cloud-init (with python3-oauthlib): Debian's cloud-init reads the fake's metadata service
# and posts to its webhook in TestCloudInitAgainstRegion; bzip2: the webhook's bzip2
# compressed files are made with it in the end-to-end test.
DEPS_PKGS += cloud-init python3 python3-oauthlib python3-yaml bzip2

BENCH_TARGETS += bench-metadata

.PHONY: bench-metadata
# Per-request cost of the metadata service (OAuth meta-data read, installer spec render),
# the status webhook (a nested event; a stage start committed to disk) and a
# commissioning resources signal, on a state directory on $(TMPDIR)'s filesystem.
bench-metadata:
	$(GO) test -count=1 -run '^$$' -bench 'BenchmarkMetadataRead|BenchmarkInstallerSpec|BenchmarkWebhookEvent|BenchmarkCommissioningResult' -benchtime 2s -benchmem ./fakemaas
