-- Bin-packing placement by memory: the unit goes to the feasible machine that has the least
-- memory left once the unit is on it (best fit), so big machines stay free for big units.
-- Machines without a memory limit come last. Ties: more units first, then the lower id.
-- See flotilla-lua(7).

function choose(unit, machines, all)
	local best, bestleft
	for i = 1, #machines do
		local m = machines[i]
		local left = math.huge
		if m.memory > 0 then
			-- the C filters guarantee the unit fits
			left = m.memory - m.memory_used - unit.memory
		end
		if best == nil or left < bestleft
		    or (left == bestleft and m.nunits > best.nunits) then
			best, bestleft = m, left
		end
	end
	return best.id
end
