package guard

import "github.com/custodyhq/custody/internal/guard/detect"

// DefaultDetectors is the guard's detector set for these datasets.
func DefaultDetectors(sets []Dataset, canaries []string) []detect.Detector {
	frozen := map[string]bool{}
	writers := map[string][]uint32{}
	for _, d := range sets {
		if d.Frozen {
			frozen[d.Name] = true
		}
		if len(d.Writers) > 0 {
			writers[d.Name] = d.Writers
		}
	}
	burst := detect.NewBurst(detect.BurstOptions{})
	return []detect.Detector{
		burst,
		detect.NewWipe(burst), // reads burst's counts: after it
		detect.NewExtension(),
		detect.NewRansomNote(),
		detect.NewRandomness(),
		detect.NewIntermittent(),
		detect.NewCanary(canaries),
		detect.NewFrozen(frozen),
		detect.NewPolicy(writers),
	}
}
