// Command ratelimit is envoyproxy/ratelimit's own service entry point, built from its Go
// module at a pinned version so the tests can feed it appinfra's generated config.yaml.
// The upstream main package cannot be imported, so this repeats its two lines.
package main

import (
	"github.com/envoyproxy/ratelimit/src/service_cmd/runner"
	"github.com/envoyproxy/ratelimit/src/settings"
)

func main() {
	r := runner.NewRunner(settings.NewSettings())
	r.Run()
}
