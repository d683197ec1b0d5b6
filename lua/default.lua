-- Flotilla's default placement policy: fleet's "least loaded". The unit goes to the feasible
-- machine with the fewest units (global units included); ties go to the lower machine id.
-- The daemon has the same rule compiled in and uses it whenever a policy file fails.
-- See flotilla-lua(7) for the API.

-- machines: the feasible machines, sorted by id; all: every machine (unused here).
function choose(unit, machines, all)
	local best = machines[1]
	local fewest = best.nunits
	for i = 2, #machines do
		local m = machines[i]
		-- strict "<": on a tie the earlier, i.e. lower, id is kept
		if m.nunits < fewest then
			best, fewest = m, m.nunits
		end
	end
	return best.id
end
