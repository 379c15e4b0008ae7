// Command luahealth runs an Argo CD resource health check the way Argo CD's application
// controller runs one from argocd-cm (util/lua/lua.go in github.com/argoproj/argo-cd):
// gopher-lua with the standard libraries skipped except package, base and table (and a
// safe os, which these scripts do not use; string and math are NOT available), the
// resource as the global `obj` (JSON numbers as Lua numbers), a 1 s budget, the last
// value on the stack taken as the result, encoded with layeh.com/gopher-json and read as
// {status, message}; a status outside Argo CD's set becomes Unknown, as Argo CD does.
//
// Usage: luahealth SCRIPT.lua < objects.json   (a JSON array of resources)
// Prints a JSON array with one {"status", "message"} or {"error"} per resource.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
)

type result struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

var validStatus = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true,
	"Healthy": true, "Degraded": true, "Missing": true,
}

// toLua mirrors how Argo CD hands an unstructured object to Lua: integers and floats
// become numbers, objects and arrays become tables, null becomes nil.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return lua.LNumber(i)
		}
		f, _ := v.Float64()
		return lua.LNumber(f)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetH(lua.LString(key), toLua(l, item))
		}
		return t
	}
	return lua.LNil
}

func run(script string, obj any) result {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), Protect: true}, lua.LString(lib.name))
		if err != nil {
			return result{Error: err.Error()}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return result{Error: err.Error()}
	}
	ret := l.Get(-1)
	if ret.Type() != lua.LTTable {
		return result{Error: "expect table output from Lua script, not " + ret.Type().String()}
	}
	encoded, err := luajson.Encode(ret)
	if err != nil {
		return result{Error: err.Error()}
	}
	var out result
	if err := json.Unmarshal(encoded, &out); err != nil {
		return result{Error: err.Error()}
	}
	if !validStatus[out.Status] {
		return result{Status: "Unknown", Message: "Lua returned an invalid health status"}
	}
	return out
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: luahealth SCRIPT.lua < objects.json")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	decoder := json.NewDecoder(os.Stdin)
	decoder.UseNumber()
	var objects []any
	if err := decoder.Decode(&objects); err != nil {
		fmt.Fprintln(os.Stderr, "objects:", err)
		os.Exit(1)
	}
	results := make([]result, 0, len(objects))
	for _, obj := range objects {
		results = append(results, run(string(script), obj))
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Stdout.Write(buf.Bytes())
}
