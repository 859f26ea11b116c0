pytest_plugins = ["cryptopipe.infra.testing", "cryptopipe.replay.testing", "cryptopipe.dashboard.testing"]
