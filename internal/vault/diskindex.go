package vault

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"syscall"
)

// diskIndex is the merged index of all index objects, kept in a local cache
// file, sorted by blob id and memory-mapped, so a vault's index costs pages
// the kernel can drop, not heap that grows with the vault. It is derived
// data: LoadBlob verifies every blob it finds through it, and check builds
// its own view from the index objects.
//
// File layout (little endian):
//
//	"CIC1" | uint32 object count | uint32 pack count | uint64 entry count |
//	object ids (32 each) | pack ids (32 each) |
//	entries sorted by id: id (32) | uint32 pack number | uint32 offset |
//	uint32 sealed length | uint32 plaintext length | type (1) | 3 zero bytes
type diskIndex struct {
	data    []byte // the mapping, nil when empty
	objects []ID   // index objects merged in
	packs   []ID
	entries []byte // sorted entries within data
	count   int
}

const (
	diskMagic     = "CIC1"
	diskHeader    = 4 + 4 + 4 + 8
	diskEntrySize = 52
)

func openDiskIndex(path string) (*diskIndex, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() < diskHeader {
		return nil, fmt.Errorf("index cache %s: truncated", path)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map index cache: %w", err)
	}
	d, err := parseDiskIndex(data)
	if err != nil {
		syscall.Munmap(data)
		return nil, fmt.Errorf("index cache %s: %w", path, err)
	}
	return d, nil
}

func parseDiskIndex(data []byte) (*diskIndex, error) {
	if string(data[:4]) != diskMagic {
		return nil, errors.New("bad magic")
	}
	nobj := uint64(binary.LittleEndian.Uint32(data[4:8]))
	npack := uint64(binary.LittleEndian.Uint32(data[8:12]))
	nent := binary.LittleEndian.Uint64(data[12:20])
	want := uint64(diskHeader) + (nobj+npack)*32 + nent*diskEntrySize
	if nent > 1<<40 || want != uint64(len(data)) {
		return nil, errors.New("size does not match its header")
	}
	d := &diskIndex{data: data, count: int(nent)}
	off := uint64(diskHeader)
	readIDs := func(n uint64) []ID {
		ids := make([]ID, n)
		for i := range ids {
			copy(ids[i][:], data[off:off+32])
			off += 32
		}
		return ids
	}
	d.objects = readIDs(nobj)
	d.packs = readIDs(npack)
	d.entries = data[off:]
	return d, nil
}

func (d *diskIndex) close() {
	if d != nil && d.data != nil {
		syscall.Munmap(d.data)
		d.data = nil
	}
}

func (d *diskIndex) entryAt(i int) (ID, location) {
	e := d.entries[i*diskEntrySize : (i+1)*diskEntrySize]
	var id ID
	copy(id[:], e[:32])
	p := binary.LittleEndian.Uint32(e[32:36])
	var pack ID
	if int(p) < len(d.packs) {
		pack = d.packs[p]
	}
	return id, location{
		Pack: pack, Type: BlobType(e[48]),
		Offset: binary.LittleEndian.Uint32(e[36:40]), Length: binary.LittleEndian.Uint32(e[40:44]), RawLen: binary.LittleEndian.Uint32(e[44:48]),
	}
}

// lookup finds id by binary search over the mapped entries. A blob stored
// in several packs has adjacent entries: the first whose pack is not
// skipped is returned.
func (d *diskIndex) lookup(id ID, skip map[ID]bool) (location, bool) {
	if d == nil {
		return location{}, false
	}
	i := sort.Search(d.count, func(i int) bool {
		return bytes.Compare(d.entries[i*diskEntrySize:i*diskEntrySize+32], id[:]) >= 0
	})
	for ; i < d.count; i++ {
		got, loc := d.entryAt(i)
		if got != id {
			break
		}
		if !skip[loc.Pack] {
			return loc, true
		}
	}
	return location{}, false
}

// each calls fn for every entry in id order.
func (d *diskIndex) each(fn func(ID, location) error) error {
	if d == nil {
		return nil
	}
	for i := 0; i < d.count; i++ {
		if err := fn(d.entryAt(i)); err != nil {
			return err
		}
	}
	return nil
}

// location is where one blob is stored.
type location struct {
	Pack   ID
	Type   BlobType
	Offset uint32
	Length uint32
	RawLen uint32
}

type newEntry struct {
	id  ID
	loc location
}

// writeMergedIndex writes to path the union of old (may be nil) and add,
// recording objects as the index objects it covers. Memory is O(add + packs).
func writeMergedIndex(path string, old *diskIndex, add []newEntry, objects []ID) error {
	slices.SortFunc(add, func(a, b newEntry) int { return bytes.Compare(a.id[:], b.id[:]) })
	var packs []ID
	packNo := map[ID]uint32{}
	if old != nil {
		packs = slices.Clone(old.packs)
		for i, p := range packs {
			packNo[p] = uint32(i)
		}
	}
	for _, e := range add {
		if _, ok := packNo[e.loc.Pack]; !ok {
			packNo[e.loc.Pack] = uint32(len(packs))
			packs = append(packs, e.loc.Pack)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".index-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	hdr := make([]byte, diskHeader)
	w.Write(hdr) // patched below once the count is known
	for _, id := range objects {
		w.Write(id[:])
	}
	for _, p := range packs {
		w.Write(p[:])
	}
	var buf [diskEntrySize]byte
	put := func(id ID, loc location) {
		copy(buf[:32], id[:])
		binary.LittleEndian.PutUint32(buf[32:], packNo[loc.Pack])
		binary.LittleEndian.PutUint32(buf[36:], loc.Offset)
		binary.LittleEndian.PutUint32(buf[40:], loc.Length)
		binary.LittleEndian.PutUint32(buf[44:], loc.RawLen)
		buf[48] = byte(loc.Type)
		w.Write(buf[:])
	}
	var count uint64
	emit := func(id ID, loc location) {
		put(id, loc) // a blob stored in two packs keeps both entries
		count++
	}
	i, j, n := 0, 0, 0
	if old != nil {
		n = old.count
	}
	for i < n || j < len(add) {
		if i < n {
			id, loc := old.entryAt(i)
			if j >= len(add) || bytes.Compare(id[:], add[j].id[:]) <= 0 {
				emit(id, loc)
				i++
				continue
			}
		}
		emit(add[j].id, add[j].loc)
		j++
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write index cache: %w", err)
	}
	copy(hdr, diskMagic)
	binary.LittleEndian.PutUint32(hdr[4:], uint32(len(objects)))
	binary.LittleEndian.PutUint32(hdr[8:], uint32(len(packs)))
	binary.LittleEndian.PutUint64(hdr[12:], count)
	if _, err := f.WriteAt(hdr, 0); err != nil {
		return fmt.Errorf("write index cache: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write index cache: %w", err)
	}
	return os.Rename(f.Name(), path)
}
