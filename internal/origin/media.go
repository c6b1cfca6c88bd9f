package origin

import (
	"bytes"
	_ "embed"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

// demoVideo is scene 1: a 10 s, 640x360, 25 fps H.264 test pattern (~150 KB),
// made once with
//
//	ffmpeg -f lavfi -i testsrc=size=640x360:rate=25 -t 10 -c:v libx264 -preset veryslow \
//	  -profile:v main -pix_fmt yuv420p -b:v 180k -maxrate 250k -bufsize 500k \
//	  -g 25 -keyint_min 25 -sc_threshold 0 -movflags +faststart -an demo.mp4
//
// (a keyframe every second so seeking is snappy; moov first so playback starts at once).
//
//go:embed demo.mp4
var demoVideo []byte

// demoScreenshot is scene 1's screenshot: the frame at 3 s, 320x180 JPEG.
//
//go:embed demo.jpg
var demoScreenshot []byte

// DemoVideo returns the bytes served as /scene/1/stream.
func DemoVideo() []byte { return bytes.Clone(demoVideo) }

// transcodeChunk and transcodeEvery pace the simulated transcode at ~640 KB/s.
const (
	transcodeChunk = 32 << 10
	transcodeEvery = 50 * time.Millisecond
)

// sceneExists is true for the one scene the demo library holds.
func sceneExists(r *http.Request) bool { return r.PathValue("id") == "1" }

func (s *Server) serveSceneStream(w http.ResponseWriter, r *http.Request) {
	if !sceneExists(r) {
		http.NotFound(w, r)
		return
	}
	http.ServeContent(w, r, "demo.mp4", modTime, bytes.NewReader(demoVideo))
}

func (s *Server) serveScreenshot(w http.ResponseWriter, r *http.Request) {
	if !sceneExists(r) {
		http.NotFound(w, r)
		return
	}
	http.ServeContent(w, r, "demo.jpg", modTime, bytes.NewReader(demoScreenshot))
}

func (s *Server) serveLargeFile(w http.ResponseWriter, r *http.Request) {
	if s.opts.LargeFilePath == "" {
		serveGenerated(w, r, s.opts.LargeFileSize)
		return
	}
	f, err := os.Open(s.opts.LargeFilePath)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	serveFile(w, r, s.opts.LargeFileSize, f)
}

func (s *Server) serveSmallFile(w http.ResponseWriter, r *http.Request) {
	serveGenerated(w, r, SmallFileSize)
}

// serveGenerated serves the size-byte test file, computed as it is read.
func serveGenerated(w http.ResponseWriter, r *http.Request, size int64) {
	serveFile(w, r, size, NewLargeFile(size))
}

// serveFile serves content, the size-byte test file computed or on disk,
// with Range support and an ETag.
func serveFile(w http.ResponseWriter, r *http.Request, size int64, content io.ReadSeeker) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"burrow-`+strconv.FormatInt(size, 10)+`"`)
	http.ServeContent(w, r, "", modTime, content)
}

// serveTranscode simulates Stash's live ffmpeg transcode: 200, chunked, no
// Range, a chunk every 50 ms until the client goes away, which it records.
func (s *Server) serveTranscode(contentType string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != "" && !sceneExists(r) {
			http.NotFound(w, r)
			return
		}
		end := s.obs.transcodeStarted(r.URL.Path)
		var written int64
		defer func() { end(written) }()

		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		if rc.Flush() != nil {
			return
		}
		src := NewLargeFile(1 << 62)
		buf := make([]byte, transcodeChunk)
		tick := time.NewTicker(transcodeEvery)
		defer tick.Stop()
		for {
			_, _ = src.Read(buf)
			n, err := w.Write(buf)
			written += int64(n)
			if err != nil || rc.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
		}
	}
}
