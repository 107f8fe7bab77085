// The page's link to the local process, off the page's main thread: the WebSocket, the
// microphone's chunks from the capture worklet, and what the caller hears to the playback
// worklet. Drawing the timeline or a busy tab then delays no audio.
//
// From the page: {connect: url}, {capture: MessagePort}, {playback: MessagePort},
// {sending: bool} (send the microphone or not), {text: string} (a command).
// To the page: {open: true}, {text: string} (an event), {closed: true}.

let socket = null;
let playback = null;
let sending = false;

onmessage = (message) => {
  const data = message.data;
  if (data.connect) connect(data.connect);
  if (data.capture) data.capture.onmessage = (chunk) => microphone(chunk.data);
  if (data.playback) playback = data.playback;
  if (data.sending !== undefined) sending = data.sending;
  if (data.text !== undefined && socket && socket.readyState === WebSocket.OPEN) socket.send(data.text);
};

function connect(url) {
  socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  socket.onopen = () => postMessage({ open: true });
  socket.onclose = () => postMessage({ closed: true });
  socket.onmessage = (message) => {
    if (message.data instanceof ArrayBuffer) {
      if (playback) playback.postMessage({ pcm: message.data }, [message.data]);
    } else {
      postMessage({ text: message.data });
    }
  };
}

function microphone(pcm) {
  if (sending && socket && socket.readyState === WebSocket.OPEN) socket.send(pcm);
}
