import { create } from 'zustand';

// Microphone, camera and speaker selection (seed 002's audioDeviceService). The choice is
// remembered in localStorage; `getLocalStream` opens the chosen devices, and the speaker
// choice is applied to every <audio>/<video> element that plays remote media.

export interface DeviceChoice {
  audioInput: string;
  videoInput: string;
  audioOutput: string;
}

interface DeviceState {
  devices: MediaDeviceInfo[];
  choice: DeviceChoice;
  setDevices: (d: MediaDeviceInfo[]) => void;
  choose: (c: Partial<DeviceChoice>) => void;
}

const KEY = 'switchboard.devices';

function loadChoice(): DeviceChoice {
  try {
    const saved = JSON.parse(localStorage.getItem(KEY) ?? '{}') as Partial<DeviceChoice>;
    return { audioInput: '', videoInput: '', audioOutput: '', ...saved };
  } catch {
    return { audioInput: '', videoInput: '', audioOutput: '' };
  }
}

export const useDeviceStore = create<DeviceState>((set, get) => ({
  devices: [],
  choice: loadChoice(),
  setDevices: (devices) => set({ devices }),
  choose: (c) => {
    const choice = { ...get().choice, ...c };
    localStorage.setItem(KEY, JSON.stringify(choice));
    set({ choice });
  },
}));

export const audioDeviceService = {
  /** Lists the devices (labels appear once the user granted media access once). */
  async getDevices(): Promise<MediaDeviceInfo[]> {
    if (!navigator.mediaDevices?.enumerateDevices) return [];
    const devices = await navigator.mediaDevices.enumerateDevices();
    useDeviceStore.getState().setDevices(devices);
    return devices;
  },

  setInputDevice(deviceId: string) {
    useDeviceStore.getState().choose({ audioInput: deviceId });
  },

  setCameraDevice(deviceId: string) {
    useDeviceStore.getState().choose({ videoInput: deviceId });
  },

  /** Routes every playing element to the speaker (where the browser supports setSinkId). */
  setOutputDevice(deviceId: string) {
    useDeviceStore.getState().choose({ audioOutput: deviceId });
    document.querySelectorAll<HTMLMediaElement>('audio, video').forEach((el) => applySink(el));
  },

  /** Opens microphone and (optionally) camera with the chosen devices. */
  async getLocalStream(video: boolean): Promise<MediaStream> {
    const { audioInput, videoInput } = useDeviceStore.getState().choice;
    const constraints: MediaStreamConstraints = {
      audio: audioInput ? { deviceId: { ideal: audioInput } } : true,
      video: video
        ? { ...(videoInput ? { deviceId: { ideal: videoInput } } : {}), width: { ideal: 640 }, height: { ideal: 360 } }
        : false,
    };
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    void this.getDevices();
    return stream;
  },

  async getScreenStream(): Promise<MediaStream> {
    return navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  },
};

/** Plays an element through the chosen speaker. */
export function applySink(el: HTMLMediaElement) {
  const sink = useDeviceStore.getState().choice.audioOutput;
  const withSink = el as HTMLMediaElement & { setSinkId?: (id: string) => Promise<void> };
  if (sink && withSink.setSinkId) withSink.setSinkId(sink).catch(() => undefined);
}

if (typeof navigator !== 'undefined' && navigator.mediaDevices) {
  navigator.mediaDevices.addEventListener?.('devicechange', () => void audioDeviceService.getDevices());
}
