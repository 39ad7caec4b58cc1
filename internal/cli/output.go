package cli

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"strconv"
	"unicode"
	"unicode/utf8"
)

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// displayPath shows a path to a person: as it is when printable, else
// Go-quoted so newlines and invalid bytes are visible and unambiguous.
func displayPath(p string) string {
	if utf8.ValidString(p) {
		printable := true
		for _, r := range p {
			if !unicode.IsPrint(r) {
				printable = false
				break
			}
		}
		if printable {
			return p
		}
	}
	return strconv.Quote(p)
}

// jsonPath is a path in JSON: "path" always (invalid bytes replaced), plus
// "path_raw" (base64 of the exact bytes) when the path is not valid UTF-8.
type jsonPath struct {
	Path    string `json:"path"`
	PathRaw string `json:"path_raw,omitempty"`
}

func newJSONPath(p string) jsonPath {
	jp := jsonPath{Path: p}
	if !utf8.ValidString(p) {
		jp.Path = strconv.Quote(p)
		jp.PathRaw = base64.StdEncoding.EncodeToString([]byte(p))
	}
	return jp
}
