-- Argo CD health check for the appinfra.dev kinds (ServiceProfile, SecretBinding,
-- HealthPolicy, RateLimitPolicy: one script, identical for all four).
-- argocd-cm keys: resource.customizations.health.appinfra.dev_<Kind>, this text under each.
-- Argo CD runs it in gopher-lua with only the base and table libraries (no string, math).
--   Degraded:    Accepted=False, Synced=False (SecretBinding) or Ready=False;
--                the message is the condition's own.
--   Healthy:     Ready=True and status.observedGeneration == metadata.generation.
--   Progressing: no status yet, an older generation observed, Ready missing or Unknown.
-- A condition stamped with an older observedGeneration describes an older spec and
-- counts as missing.
local hs = {}
local generation = obj.metadata.generation

local function current(condition)
  return condition.observedGeneration == nil or generation == nil
    or condition.observedGeneration >= generation
end

local function find(conditionType)
  if obj.status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == conditionType and current(condition) then
      return condition
    end
  end
  return nil
end

local function explain(condition)
  if condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  local text = condition.type .. "=" .. tostring(condition.status)
  if condition.reason ~= nil and condition.reason ~= "" then
    text = text .. " (" .. condition.reason .. ")"
  end
  return text
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the appinfra operator to report status"
  return hs
end

local observed = obj.status.observedGeneration
if observed == nil or (generation ~= nil and observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the appinfra operator to observe generation " .. tostring(generation)
  return hs
end

for _, conditionType in ipairs({"Accepted", "Synced", "Ready"}) do
  local condition = find(conditionType)
  if condition ~= nil and condition.status == "False" then
    hs.status = "Degraded"
    hs.message = explain(condition)
    return hs
  end
end

local ready = find("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = explain(ready)
  return hs
end

hs.status = "Progressing"
if ready == nil then
  hs.message = "Waiting for the Ready condition"
else
  hs.message = explain(ready)
end
return hs
