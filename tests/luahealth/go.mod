module appinfra.dev/tests/luahealth

go 1.23.0

// The versions Argo CD itself pins (github.com/argoproj/argo-cd/v3 go.mod, v3.6.1):
// health checks run in this Lua VM and their result is encoded with this JSON module.
require (
	github.com/yuin/gopher-lua v1.1.2
	layeh.com/gopher-json v0.0.0-20190114024228-97fed8db8427
)
