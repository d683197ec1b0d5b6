-- Spread placement: keep the number of units even across the values of one metadata key (a
-- zone, a rack, a region), then least-loaded inside the chosen value. Machines without the key
-- form one group of their own (the empty value). See flotilla-lua(7).

-- The metadata key to spread across; change it here.
local KEY = "zone"

function choose(unit, machines, all)
	-- units per group, over every machine: a group is loaded even where this unit cannot go
	local load = {}
	for i = 1, #all do
		local m = all[i]
		local g = m.metadata[KEY] or ""
		load[g] = (load[g] or 0) + m.nunits
	end
	local best, bestg, bestl
	for i = 1, #machines do
		local m = machines[i]
		local g = m.metadata[KEY] or ""
		local l = load[g]
		-- fewest units in the group, then the group name, then fewest units on the machine;
		-- machines come sorted by id, so a full tie keeps the lower id
		if best == nil or l < bestl or (l == bestl and g < bestg)
		    or (g == bestg and m.nunits < best.nunits) then
			best, bestg, bestl = m, g, l
		end
	end
	return best.id
end
